import fs from "node:fs";
import path from "node:path";
import { fmt, pct } from "./figures";
import { printLines } from "./print";

/** The parts of a V8 CPU profile (a .cpuprofile file, or the inspector's Profiler.stop) read here. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples?: number[];
  timeDeltas?: number[];
}

type Shares = { name: string; share: number }[];

/** The profiles `node --cpu-prof` wrote into `dir`. */
export const profilesIn = (dir: string): CpuProfile[] =>
  fs
    .readdirSync(dir)
    .filter(f => f.endsWith(".cpuprofile"))
    .map(f => JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as CpuProfile);

/**
 * Where a process's CPU time went: the share of self time of each function and of each module (a
 * package in node_modules, or a project file), largest first. "(garbage collector)", "(program)" and
 * "(idle)" are V8's own entries.
 */
export function summarizeProfile(profile: CpuProfile): {
  seconds: number;
  byModule: Shares;
  byFunction: Shares;
} {
  const frames = new Map(profile.nodes.map(n => [n.id, n.callFrame]));
  const byFunction = new Map<string, number>();
  const byModule = new Map<string, number>();
  let total = 0;
  (profile.samples ?? []).forEach((id, i) => {
    const t = profile.timeDeltas?.[i] ?? 0;
    const frame = frames.get(id);
    if (!frame || t <= 0) return;
    total += t;
    const where = frame.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/(?=[^/]+\/[^/]+$)/, "");
    // A package is its name, scoped or not; a project file is itself.
    const pkg = frame.url.includes("node_modules/") ? /^(@[^/]+\/)?[^/]+/.exec(where)?.[0] : where;
    const module = pkg || frame.functionName;
    const fn = `${frame.functionName || "(anonymous)"}${where ? ` ${where}:${frame.lineNumber + 1}` : ""}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + t);
    byModule.set(module, (byModule.get(module) ?? 0) + t);
  });
  const ranked = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).map(([name, t]) => ({ name, share: t / total }));
  return { seconds: total / 1e6, byModule: ranked(byModule), byFunction: ranked(byFunction) };
}

/** The `top` modules and functions of a profile, as shares of its busy (not idle) time. */
export function printProfile(profile: CpuProfile, top: number): void {
  const p = summarizeProfile(profile);
  const idle = p.byModule.find(m => m.name === "(idle)")?.share ?? 0;
  const heading = `  ${fmt(p.seconds, 1)} s sampled, ${pct(idle)} idle`;
  // A thread that mostly waited (tsx's module hooks, say) has nothing to show.
  if (idle > 0.9) return console.log(heading);
  const rows = (shares: Shares) =>
    shares
      .filter(s => !s.name.startsWith("(idle)"))
      .slice(0, top)
      .map(s => `    ${pct(s.share / (1 - idle), 1).padStart(6)}  ${s.name}`);
  printLines(
    `${heading}; self time as a share of the busy time, by module:`,
    ...rows(p.byModule),
    "  by function:",
    ...rows(p.byFunction),
  );
}
