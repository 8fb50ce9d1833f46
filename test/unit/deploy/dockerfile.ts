/** A Dockerfile as stages of instructions, and .dockerignore's matcher: enough to check ours. */

export interface Instruction {
  keyword: string;
  args: string;
  /** Flags such as --from=build of COPY, as name -> value. */
  flags: Record<string, string>;
  /** The exec-form (JSON array) arguments, when the instruction uses that form. */
  exec?: string[];
}

export interface Stage {
  image: string;
  name?: string;
  instructions: Instruction[];
}

export function parseDockerfile(text: string): Stage[] {
  const lines = text
    .replace(/\\\r?\n/g, " ")
    .split(/\r?\n/)
    .map(l => l.trim())
    .filter(l => l && !l.startsWith("#"));
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(line);
    if (!m) throw new Error(`cannot read Dockerfile line: ${line}`);
    const keyword = m[1].toUpperCase();
    let args = m[2].trim();
    const flags: Record<string, string> = {};
    for (let f = /^--([\w-]+)(?:=(\S+))?\s+/.exec(args); f; f = /^--([\w-]+)(?:=(\S+))?\s+/.exec(args)) {
      flags[f[1]] = f[2] ?? "true";
      args = args.slice(f[0].length);
    }
    if (keyword === "FROM") {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!from) throw new Error(`cannot read FROM ${args}`);
      stages.push({ image: from[1], name: from[2], instructions: [] });
      continue;
    }
    if (stages.length === 0) {
      if (keyword === "ARG") continue;
      throw new Error(`${keyword} before the first FROM`);
    }
    const instruction: Instruction = { keyword, args, flags };
    const execText = keyword === "HEALTHCHECK" ? args.replace(/^CMD\s+/i, "") : args;
    if (execText.startsWith("[")) {
      try {
        instruction.exec = JSON.parse(execText) as string[];
      } catch {
        throw new Error(`${keyword} is not a valid JSON array: ${execText}`);
      }
    }
    stages[stages.length - 1].instructions.push(instruction);
  }
  return stages;
}

/** Docker's .dockerignore semantics, simplified: glob patterns, `!` exceptions, last match wins. */
export function dockerIgnoreMatcher(text: string): (path: string) => boolean {
  const rules = text
    .split(/\r?\n/)
    .map(l => l.trim())
    .filter(l => l && !l.startsWith("#"))
    .map(l => {
      const negate = l.startsWith("!");
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+|\/+$/g, "");
      const source = pattern
        .split("/")
        .map(part =>
          part === "**"
            ? ".*"
            : part
                .replace(/[.+^${}()|\\]/g, "\\$&")
                .replace(/\*/g, "[^/]*")
                .replace(/\?/g, "[^/]"),
        )
        .join("/");
      return { negate, regex: new RegExp(`^${source}(/.*)?$`) };
    });
  return (path: string) => {
    let ignored = false;
    for (const rule of rules) if (rule.regex.test(path)) ignored = !rule.negate;
    return ignored;
  };
}
