import fs from "node:fs";
import path from "node:path";

/** The parts of a V8 .cpuprofile this summary reads. */
interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  seconds: number;
  /** Share of self time by package (node_modules) or project file, largest first. */
  byModule: { name: string; share: number }[];
  /** Share of self time by function, largest first. */
  byFunction: { name: string; share: number }[];
}

/**
 * Where a process's CPU time went, from the .cpuprofile files `node --cpu-prof` wrote into `dir`:
 * self time per function and per module. "(garbage collector)", "(program)" and "(idle)" are
 * V8's own entries.
 */
export function summarizeProfiles(dir: string, top = 12): ProfileSummary[] {
  return fs
    .readdirSync(dir)
    .filter(f => f.endsWith(".cpuprofile"))
    .map(file => {
      const profile = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")) as CpuProfile;
      const frames = new Map(profile.nodes.map(n => [n.id, n.callFrame]));
      const byFunction = new Map<string, number>();
      const byModule = new Map<string, number>();
      let total = 0;
      profile.samples.forEach((id, i) => {
        const t = profile.timeDeltas[i] ?? 0;
        const frame = frames.get(id);
        if (!frame || t <= 0) return;
        total += t;
        const where = frame.url
          .replace(/^.*node_modules\//, "")
          .replace(/^file:\/\/.*?\/(?=[^/]+\/[^/]+$)/, "");
        const pkg = frame.url.includes("node_modules/")
          ? where
              .split("/")
              .slice(0, where.startsWith("@") ? 2 : 1)
              .join("/")
          : where || frame.functionName;
        const fn = `${frame.functionName || "(anonymous)"}${where ? ` ${where}:${frame.lineNumber + 1}` : ""}`;
        byFunction.set(fn, (byFunction.get(fn) ?? 0) + t);
        byModule.set(pkg, (byModule.get(pkg) ?? 0) + t);
      });
      const ranked = (m: Map<string, number>) =>
        [...m]
          .sort((a, b) => b[1] - a[1])
          .slice(0, top)
          .map(([name, t]) => ({ name, share: t / total }));
      return { file, seconds: total / 1e6, byModule: ranked(byModule), byFunction: ranked(byFunction) };
    });
}
