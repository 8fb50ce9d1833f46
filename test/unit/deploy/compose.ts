import fs from "node:fs";
import path from "node:path";
import { parse as parseYaml, parseDocument } from "yaml";
import type { Config } from "../../../lib/config";
import { isRecord } from "./repo-files";

/**
 * A Docker Compose file read the way Compose reads it (YAML with `<<` merge keys, then `${VAR}`
 * interpolation), and the cross-checks behind compose.test.ts. Each check returns its problems as
 * lines naming the service; an empty list means the check holds. The checks know the servers this
 * project runs (Kafka, NATS, Postgres, Redis, Prometheus, Grafana, kafka-ui, pgAdmin) by image,
 * and the app's own services as those built from the Dockerfile.
 */

// ---------------------------------------------------------------------------------------------
// The model

export interface Healthcheck {
  test?: string | string[];
  disable?: boolean | string;
}

export interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: (string | number | { target: number; published?: string | number; host_ip?: string })[];
  volumes?: (string | { type: string; source?: string; target: string; read_only?: boolean })[];
  depends_on?: string[] | Record<string, { condition: string }>;
  healthcheck?: Healthcheck;
  profiles?: string[];
  deploy?: { replicas?: number };
  scale?: number;
  restart?: string;
  stop_grace_period?: string;
  container_name?: string;
}

export interface ComposeModel {
  name?: string;
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

/** What the checks know besides the file: the code it deploys and the files beside it. */
export interface ComposeContext {
  /** Folder of the compose file: relative bind mounts and build contexts resolve from here. */
  dir: string;
  /** Every variable lib/config.ts reads. */
  configVariables: readonly string[];
  /** lib/config.ts's loader, to validate the values and learn ports and roles. */
  loadConfig(env: Record<string, string>): Config;
  /** package.json's version: the tag of the image the file builds. */
  appVersion: string;
  /** Whether the Dockerfile declares a HEALTHCHECK (the built services inherit it). */
  appImageHealthcheck: boolean;
  /** bin/start.ts exits hard this long after SHUTDOWN_GRACE_MS. */
  shutdownMarginMs: number;
  /** Path of every node's Prometheus endpoint. */
  metricsPath: string;
  /** In-memory replacements for files under `dir` (relative path -> text), for the tests' mistakes. */
  files?: Record<string, string>;
}

export interface Project {
  model: ComposeModel;
  ctx: ComposeContext;
}

/** Parses a compose file: YAML errors throw; merge keys are applied; values are interpolated. */
export function parseCompose(text: string, env: Record<string, string | undefined> = {}): ComposeModel {
  const doc = parseDocument(text, { merge: true, prettyErrors: true });
  if (doc.errors.length > 0) throw new Error(doc.errors.map(e => e.message).join("; "));
  return interpolateValues(doc.toJS(), env) as ComposeModel;
}

// ---------------------------------------------------------------------------------------------
// Interpolation (Compose Specification, "Interpolation"): $$, $VAR, ${VAR}, ${VAR:-default},
// ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}, nested in the defaults.

export function interpolate(value: string, env: Record<string, string | undefined>): string {
  let out = "";
  let i = 0;
  while (i < value.length) {
    if (value[i] !== "$") {
      out += value[i++];
      continue;
    }
    const next = value[i + 1];
    if (next === "$") {
      out += "$";
      i += 2;
    } else if (next === "{") {
      const end = closingBrace(value, i + 2);
      out += resolveBraced(value.slice(i + 2, end), env);
      i = end + 1;
    } else {
      const name = /^[A-Za-z_]\w*/.exec(value.slice(i + 1))?.[0];
      if (name) {
        out += env[name] ?? "";
        i += 1 + name.length;
      } else {
        out += value[i++];
      }
    }
  }
  return out;
}

function closingBrace(value: string, from: number): number {
  let depth = 1;
  for (let i = from; i < value.length; i++) {
    if (value[i] === "$" && value[i + 1] === "{") {
      depth++;
      i++;
    } else if (value[i] === "}" && --depth === 0) {
      return i;
    }
  }
  throw new Error(`unclosed \${ in "${value}"`);
}

function resolveBraced(inner: string, env: Record<string, string | undefined>): string {
  const m = /^([A-Za-z_]\w*)(?:(:?[-?+])([\s\S]*))?$/.exec(inner);
  if (!m) throw new Error(`invalid interpolation \${${inner}}`);
  const [, name, op, arg = ""] = m;
  const v = env[name];
  const set = v !== undefined;
  const nonEmpty = set && v !== "";
  switch (op) {
    case undefined:
      return v ?? "";
    case ":-":
      return nonEmpty ? v : interpolate(arg, env);
    case "-":
      return set ? v : interpolate(arg, env);
    case ":+":
      return nonEmpty ? interpolate(arg, env) : "";
    case "+":
      return set ? interpolate(arg, env) : "";
    default:
      if (op === ":?" ? !nonEmpty : !set) throw new Error(`required variable ${name}: ${arg}`);
      return v!;
  }
}

function interpolateValues(value: unknown, env: Record<string, string | undefined>): unknown {
  if (typeof value === "string") return interpolate(value, env);
  if (Array.isArray(value)) return value.map(v => interpolateValues(v, env));
  if (isRecord(value))
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateValues(v, env)]));
  return value;
}

// ---------------------------------------------------------------------------------------------
// Reading a service

/** The environment a service sets (map or list form); entries without a value are left out. */
export function envOf(service: Service): Record<string, string> {
  const out: Record<string, string> = {};
  const env = service.environment ?? {};
  if (Array.isArray(env)) {
    for (const entry of env) {
      const eq = entry.indexOf("=");
      if (eq > 0) out[entry.slice(0, eq)] = entry.slice(eq + 1);
    }
  } else {
    for (const [k, v] of Object.entries(env)) if (v !== null) out[k] = String(v);
  }
  return out;
}

export function argsOf(service: Service): string[] {
  const c = service.command;
  return c === undefined ? [] : Array.isArray(c) ? c : c.split(/\s+/).filter(Boolean);
}

/** The value of a command-line option, as `--name value` or `--name=value`. */
export function argValue(args: string[], ...names: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    for (const name of names) {
      if (args[i] === name) return args[i + 1];
      if (args[i].startsWith(`${name}=`)) return args[i].slice(name.length + 1);
    }
  }
  return undefined;
}

export interface PortMapping {
  hostIp?: string;
  published?: number;
  target: number;
}

/** Ports in short (`[ip:][published:]target[/proto]`) or long syntax. */
export function portsOf(service: Service): PortMapping[] {
  return (service.ports ?? []).map(p => {
    if (typeof p === "number") return { target: p };
    if (typeof p === "object") {
      return {
        target: Number(p.target),
        published: p.published === undefined ? undefined : Number(p.published),
        hostIp: p.host_ip,
      };
    }
    const parts = p.replace(/\/\w+$/, "").split(":");
    const target = Number(parts.pop());
    const published = parts.length > 0 ? Number(parts.pop()) : undefined;
    return { target, published, hostIp: parts.length > 0 ? parts.join(":") : undefined };
  });
}

export interface Mount {
  type: string;
  source?: string;
  target: string;
  readOnly: boolean;
}

/** Volumes in short (`source:target[:mode]`) or long syntax; sources with a path are binds. */
export function mountsOf(service: Service): Mount[] {
  return (service.volumes ?? []).map(v => {
    if (typeof v === "object")
      return { type: v.type, source: v.source, target: v.target, readOnly: v.read_only === true };
    const parts = v.split(":");
    if (parts.length === 1) return { type: "volume", target: parts[0], readOnly: false };
    const [source, target, mode = ""] = parts;
    const bind = /^[./~]/.test(source);
    return { type: bind ? "bind" : "volume", source, target, readOnly: mode.split(",").includes("ro") };
  });
}

/** The services a service waits for, with the condition (the list form means service_started). */
export function dependsOf(service: Service): Record<string, string> {
  const d = service.depends_on ?? {};
  if (Array.isArray(d)) return Object.fromEntries(d.map(name => [name, "service_started"]));
  return Object.fromEntries(Object.entries(d).map(([name, v]) => [name, v.condition]));
}

export function replicasOf(service: Service): number {
  return service.scale ?? service.deploy?.replicas ?? 1;
}

/** Compose durations: 1h2m3s4ms5us, each unit optional. */
export function durationMs(text: string): number {
  const units: Record<string, number> = { h: 3600000, m: 60000, s: 1000, ms: 1, us: 0.001 };
  let total = 0;
  const rest = text.replace(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g, (_, n: string, unit: string) => {
    total += Number(n) * units[unit];
    return "";
  });
  if (rest !== "" || text === "") throw new Error(`not a duration: "${text}"`);
  return total;
}

export interface ImageRef {
  /** Repository without registry host and without "library/", e.g. "postgres", "apache/kafka". */
  repository: string;
  tag?: string;
  digest?: string;
}

export function parseImage(ref: string): ImageRef {
  const [nameTag, digest] = ref.split("@");
  const slash = nameTag.lastIndexOf("/");
  const colon = nameTag.lastIndexOf(":");
  const name = colon > slash ? nameTag.slice(0, colon) : nameTag;
  const tag = colon > slash ? nameTag.slice(colon + 1) : undefined;
  const parts = name.split("/");
  // A first component with a dot or a port (or "localhost") is a registry host.
  if (parts.length > 1 && /[.:]|^localhost$/.test(parts[0])) parts.shift();
  if (parts[0] === "library") parts.shift();
  return { repository: parts.join("/"), tag, digest };
}

const repositoryOf = (service: Service) => (service.image ? parseImage(service.image).repository : "");

/** The project's own services: those built from the Dockerfile. */
export const isApp = (service: Service) => service.build !== undefined;

const entries = (p: Project) => Object.entries(p.model.services ?? {});
const appServices = (p: Project) => entries(p).filter(([, s]) => isApp(s));
const ofImage = (p: Project, ...repositories: string[]) =>
  entries(p).filter(([, s]) => repositories.includes(repositoryOf(s)));

/** lib/config.ts's view of an app service, or the error it would stop the node with. */
export function configOf(p: Project, service: Service): Config | Error {
  try {
    return p.ctx.loadConfig(envOf(service));
  } catch (err) {
    return err as Error;
  }
}

// ---------------------------------------------------------------------------------------------
// Files: the compose folder, with the tests' in-memory replacements

function relPath(p: Project, hostPath: string): string {
  return path.relative(p.ctx.dir, path.resolve(p.ctx.dir, hostPath)).split(path.sep).join("/");
}

export function fileExists(p: Project, hostPath: string): boolean {
  return (
    p.ctx.files?.[relPath(p, hostPath)] !== undefined || fs.existsSync(path.resolve(p.ctx.dir, hostPath))
  );
}

export function readFile(p: Project, hostPath: string): string {
  return p.ctx.files?.[relPath(p, hostPath)] ?? fs.readFileSync(path.resolve(p.ctx.dir, hostPath), "utf8");
}

/** The host path behind a path inside a service's container, through its bind mounts. */
export function hostPathOf(service: Service, containerPath: string): string | undefined {
  const binds = mountsOf(service)
    .filter(m => m.type === "bind" && m.source !== undefined)
    .sort((a, b) => b.target.length - a.target.length);
  for (const m of binds) {
    const inside = path.posix.relative(m.target, containerPath);
    if (inside === "" || (!inside.startsWith("..") && !path.posix.isAbsolute(inside)))
      return path.posix.join(m.source!, inside);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// What each server listens on, by image

export type Protocol = "kafka" | "kafka-controller" | "nats" | "postgres" | "redis" | "http" | "metrics";

export interface Endpoint {
  port: number;
  protocol: Protocol;
}

const portOfAddress = (address: string) => Number(/:(\d+)$/.exec(address)?.[1]);

/** Kafka's listener settings: name -> host and port. */
export function kafkaListeners(value: string | undefined): Map<string, { host: string; port: number }> {
  const out = new Map<string, { host: string; port: number }>();
  for (const item of (value ?? "").split(",").filter(Boolean)) {
    const m = /^(\w+):\/\/([^:]*):(\d+)$/.exec(item.trim());
    if (m) out.set(m[1], { host: m[2], port: Number(m[3]) });
  }
  return out;
}

export function endpointsOf(p: Project, service: Service): Endpoint[] {
  const env = envOf(service);
  const args = argsOf(service);
  if (isApp(service)) {
    const config = configOf(p, service);
    if (config instanceof Error) return [];
    const out: Endpoint[] = [];
    if (config.services.includes("gateway")) out.push({ port: config.port, protocol: "http" });
    if (config.metricsPort > 0) out.push({ port: config.metricsPort, protocol: "metrics" });
    return out;
  }
  switch (repositoryOf(service)) {
    case "apache/kafka": {
      const controllers = (env.KAFKA_CONTROLLER_LISTENER_NAMES ?? "").split(",");
      return [...kafkaListeners(env.KAFKA_LISTENERS)].map(([name, l]) => ({
        port: l.port,
        protocol: controllers.includes(name) ? "kafka-controller" : "kafka",
      }));
    }
    case "nats": {
      const out: Endpoint[] = [{ port: Number(argValue(args, "--port", "-p") ?? 4222), protocol: "nats" }];
      const monitor = argValue(args, "--http_port", "-m");
      if (monitor) out.push({ port: Number(monitor), protocol: "http" });
      return out;
    }
    case "postgres":
      return [{ port: Number(argValue(args, "-p") ?? env.PGPORT ?? 5432), protocol: "postgres" }];
    case "redis":
      return [{ port: Number(argValue(args, "--port") ?? 6379), protocol: "redis" }];
    case "prom/prometheus":
      return [{ port: portOfAddress(argValue(args, "--web.listen-address") ?? ":9090"), protocol: "http" }];
    case "grafana/grafana-oss":
    case "grafana/grafana":
      return [{ port: Number(env.GF_SERVER_HTTP_PORT ?? 3000), protocol: "http" }];
    case "kafbat/kafka-ui":
    case "provectuslabs/kafka-ui":
      return [{ port: Number(env.SERVER_PORT ?? 8080), protocol: "http" }];
    case "dpage/pgadmin4":
      return [{ port: Number(env.PGADMIN_LISTEN_PORT ?? 80), protocol: "http" }];
    default:
      return [];
  }
}

// ---------------------------------------------------------------------------------------------
// Who talks to whom: every host:port a service's configuration names

export interface Reference {
  /** The service whose configuration holds the address. */
  from: string;
  /** Where: an environment variable or a file. */
  what: string;
  host: string;
  port: number;
  protocol: Protocol;
}

function urlReference(
  from: string,
  what: string,
  url: string,
  protocol: Protocol,
  port: number,
): Reference[] {
  try {
    const u = new URL(url);
    return [{ from, what, host: u.hostname, port: u.port ? Number(u.port) : port, protocol }];
  } catch {
    return [];
  }
}

function addressReference(from: string, what: string, address: string, protocol: Protocol): Reference[] {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address.trim());
  return m ? [{ from, what, host: m[1], port: Number(m[2]), protocol }] : [];
}

/** The addresses in the services' environments (the app's, kafka-ui's, Grafana's datasources). */
export function references(p: Project): Reference[] {
  const out: Reference[] = [];
  for (const [name, s] of entries(p)) {
    const env = envOf(s);
    if (isApp(s)) {
      for (const broker of (env.KAFKA_BROKERS ?? "").split(",").filter(Boolean))
        out.push(...addressReference(name, "KAFKA_BROKERS", broker, "kafka"));
      if (env.NATS_URL) out.push(...urlReference(name, "NATS_URL", env.NATS_URL, "nats", 4222));
      if (env.DATABASE_URL)
        out.push(...urlReference(name, "DATABASE_URL", env.DATABASE_URL, "postgres", 5432));
      if (env.REDIS_URL) out.push(...urlReference(name, "REDIS_URL", env.REDIS_URL, "redis", 6379));
    }
    for (const [key, value] of Object.entries(env)) {
      if (/^KAFKA_CLUSTERS_\d+_BOOTSTRAPSERVERS$/.test(key) && !isApp(s))
        for (const broker of value.split(",")) out.push(...addressReference(name, key, broker, "kafka"));
    }
  }
  for (const ds of grafanaDatasources(p)) {
    if (ds.protocol === "postgres") out.push(...addressReference(ds.from, ds.what, ds.url, "postgres"));
    else out.push(...urlReference(ds.from, ds.what, ds.url, "http", 80));
  }
  return out;
}

function checkReference(p: Project, r: Reference): string[] {
  const target = p.model.services[r.host];
  if (!target) return [`${r.from}: ${r.what} names host "${r.host}", which is no service of this file`];
  const ports = endpointsOf(p, target).filter(e => e.protocol === r.protocol);
  if (ports.some(e => e.port === r.port)) return [];
  const listening = ports.map(e => e.port).join(", ") || "nothing";
  return [
    `${r.from}: ${r.what} uses port ${r.port} of ${r.host}, which listens for ${r.protocol} on ${listening}`,
  ];
}

// ---------------------------------------------------------------------------------------------
// The checks

/** Every variable set on an app service is one lib/config.ts reads (a typo is silently ignored). */
export function checkEnvironmentNames(p: Project): string[] {
  return appServices(p).flatMap(([name, s]) =>
    Object.keys(envOf(s))
      .filter(k => !p.ctx.configVariables.includes(k))
      .map(k => `${name}: ${k} is not a variable lib/config.ts reads`),
  );
}

/** The only adapters variables: unset, each silently means the embedded stand-in. */
export const ADAPTER_VARIABLES = ["KAFKA_BROKERS", "NATS_URL", "DATABASE_URL", "REDIS_URL"];

/** lib/config.ts accepts every app service's values; all four adapters are set; roles and node ids. */
export function checkAppConfig(p: Project): string[] {
  const problems: string[] = [];
  const nodeIds = new Map<string, string>();
  const roles = new Set<string>();
  let allRoles: readonly string[] = [];
  try {
    allRoles = p.ctx.loadConfig({}).services;
  } catch (err) {
    problems.push(`lib/config.ts rejects an empty environment: ${(err as Error).message}`);
  }
  for (const [name, s] of appServices(p)) {
    const env = envOf(s);
    const config = configOf(p, s);
    if (config instanceof Error) problems.push(`${name}: ${config.message}`);
    else config.services.forEach(r => roles.add(r));
    for (const v of ADAPTER_VARIABLES)
      if (!env[v]) problems.push(`${name}: ${v} is unset, so the node silently runs its embedded stand-in`);
    if (!env.SERVICES) problems.push(`${name}: SERVICES is unset, so the node runs every role`);
    if (env.NODE_ID && replicasOf(s) > 1)
      problems.push(`${name}: NODE_ID "${env.NODE_ID}" is shared by its ${replicasOf(s)} replicas`);
    if (env.NODE_ID && nodeIds.has(env.NODE_ID))
      problems.push(`${name}: NODE_ID "${env.NODE_ID}" is also the node id of ${nodeIds.get(env.NODE_ID)}`);
    if (env.NODE_ID) nodeIds.set(env.NODE_ID, name);
  }
  const missing = allRoles.filter(r => !roles.has(r));
  if (missing.length > 0) problems.push(`no app service runs ${missing.join(", ")} (SERVICES)`);
  return problems;
}

/** Every address a service is configured with is a service of the file listening there. */
export function checkReferences(p: Project): string[] {
  return references(p).flatMap(r => checkReference(p, r));
}

/**
 * Kafka: clients in the network reach a listener that advertises the service's own name (else
 * the metadata sends them to an address they cannot reach); one broker means internal topics with
 * one replica; the app creates its topic, so auto-creation stays off.
 */
export function checkKafka(p: Project): string[] {
  const problems: string[] = [];
  const brokers = ofImage(p, "apache/kafka");
  for (const [name, s] of brokers) {
    const env = envOf(s);
    const listeners = kafkaListeners(env.KAFKA_LISTENERS);
    const advertised = kafkaListeners(env.KAFKA_ADVERTISED_LISTENERS);
    const protocols = new Map(
      (env.KAFKA_LISTENER_SECURITY_PROTOCOL_MAP ?? "")
        .split(",")
        .map(pair => pair.split(":") as [string, string]),
    );
    for (const listener of listeners.keys())
      if (!protocols.has(listener)) problems.push(`${name}: listener ${listener} has no security protocol`);
    for (const [listener, a] of advertised) {
      const l = listeners.get(listener);
      if (!l) problems.push(`${name}: advertises listener ${listener}, which KAFKA_LISTENERS does not open`);
      else if (l.port !== a.port)
        problems.push(`${name}: advertises ${listener} on port ${a.port}, but it listens on ${l.port}`);
    }
    if (env.KAFKA_AUTO_CREATE_TOPICS_ENABLE !== "false")
      problems.push(`${name}: KAFKA_AUTO_CREATE_TOPICS_ENABLE must be "false": the app creates its topic`);
    for (const v of [
      "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
      "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ]) {
      if (Number(env[v] ?? 3) > brokers.length)
        problems.push(`${name}: ${v} is ${env[v] ?? "3 (unset)"}, more than the ${brokers.length} broker(s)`);
    }
    if (!env.CLUSTER_ID) problems.push(`${name}: CLUSTER_ID is unset (KRaft storage needs one)`);
    for (const r of references(p).filter(r => r.host === name && r.protocol === "kafka")) {
      const listener = [...listeners].find(([, l]) => l.port === r.port)?.[0];
      const a = listener ? advertised.get(listener) : undefined;
      if (listener && (!a || a.host !== name || a.port !== r.port)) {
        const shown = a ? `${a.host}:${a.port}` : "nothing";
        problems.push(`${r.from}: ${r.what} reaches ${name}:${r.port}, whose listener advertises ${shown}`);
      }
    }
  }
  return problems;
}

/** The gateway publishes PORT as itself; no two services claim one host port; replicas publish none. */
export function checkPublishedPorts(p: Project): string[] {
  const problems: string[] = [];
  const claimed = new Map<string, string>();
  for (const [name, s] of entries(p)) {
    const ports = portsOf(s);
    for (const port of ports) {
      if (port.published === undefined) continue;
      const key = `${port.hostIp ?? "0.0.0.0"}:${port.published}`;
      if (claimed.has(key))
        problems.push(`${name}: host port ${key} is also published by ${claimed.get(key)}`);
      claimed.set(key, name);
      if (replicasOf(s) > 1)
        problems.push(`${name}: ${replicasOf(s)} replicas cannot share host port ${key}`);
    }
    if (!isApp(s)) continue;
    const config = configOf(p, s);
    if (config instanceof Error || !config.services.includes("gateway")) continue;
    const gateway = ports.find(port => port.target === config.port);
    if (!gateway) problems.push(`${name}: the gateway's PORT ${config.port} is not published`);
    else if (gateway.published !== config.port)
      problems.push(`${name}: PORT ${config.port} is published as ${gateway.published ?? "a random port"}`);
  }
  return problems;
}

interface ScrapeJob {
  job_name: string;
  metrics_path?: string;
  static_configs?: { targets: string[] }[];
  dns_sd_configs?: { names: string[]; type?: string; port?: number }[];
}

/** Prometheus scrapes every app node's METRICS_PORT and path, and only app nodes' metrics ports. */
export function checkPrometheus(p: Project): string[] {
  const problems: string[] = [];
  for (const [name, s] of ofImage(p, "prom/prometheus")) {
    const inside = argValue(argsOf(s), "--config.file") ?? "/etc/prometheus/prometheus.yml";
    const host = hostPathOf(s, inside);
    if (!host || !fileExists(p, host)) {
      problems.push(`${name}: its configuration ${inside} is mounted from no file of the repository`);
      continue;
    }
    const config = parseYaml(readFile(p, host)) as { scrape_configs?: ScrapeJob[] };
    const scraped = new Set<string>();
    for (const job of config.scrape_configs ?? []) {
      if ((job.metrics_path ?? "/metrics") !== p.ctx.metricsPath)
        problems.push(
          `${name}: job ${job.job_name} scrapes ${job.metrics_path}, the nodes serve ${p.ctx.metricsPath}`,
        );
      const targets = [
        ...(job.static_configs ?? []).flatMap(c => c.targets),
        ...(job.dns_sd_configs ?? []).flatMap(c => {
          if ((c.type ?? "SRV") !== "A")
            problems.push(`${name}: job ${job.job_name} asks DNS for SRV records`);
          return c.names.map(n => `${n}:${c.port}`);
        }),
      ];
      for (const target of targets) {
        const [r] = addressReference(name, `${host} job ${job.job_name}`, target, "metrics");
        if (!r) {
          problems.push(`${name}: job ${job.job_name} has target "${target}" without a port`);
          continue;
        }
        problems.push(...checkReference(p, r));
        scraped.add(`${r.host}:${r.port}`);
      }
    }
    for (const [app, a] of appServices(p)) {
      const metrics = endpointsOf(p, a).find(e => e.protocol === "metrics");
      if (metrics && !scraped.has(`${app}:${metrics.port}`))
        problems.push(`${name}: ${host} does not scrape ${app} (metrics on port ${metrics.port})`);
    }
  }
  return problems;
}

interface GrafanaDatasource {
  from: string;
  what: string;
  protocol: "postgres" | "http";
  url: string;
  user?: string;
  password?: string;
  database?: string;
}

function grafanaProvisioning(s: Service): string | undefined {
  const inside = envOf(s).GF_PATHS_PROVISIONING ?? "/etc/grafana/provisioning";
  return hostPathOf(s, inside);
}

const substitute = (text: string, env: Record<string, string>) =>
  text.replace(/\$\{(\w+)\}|\$(\w+)/g, (all, a?: string, b?: string) => {
    const key = a ?? b!;
    return key.startsWith("__") ? all : (env[key] ?? "");
  });

/** Grafana's provisioned datasources, with the service's environment substituted as Grafana does. */
export function grafanaDatasources(p: Project): GrafanaDatasource[] {
  const out: GrafanaDatasource[] = [];
  for (const [name, s] of ofImage(p, "grafana/grafana-oss", "grafana/grafana")) {
    const dir = grafanaProvisioning(s);
    if (!dir || !fileExists(p, path.posix.join(dir, "datasources"))) continue;
    const env = envOf(s);
    for (const file of provisioningFiles(p, dir, "datasources")) {
      const doc = parseYaml(substitute(readFile(p, file), env)) as {
        datasources?: {
          name: string;
          type: string;
          url?: string;
          user?: string;
          jsonData?: { database?: string };
          secureJsonData?: { password?: string };
        }[];
      };
      for (const ds of doc.datasources ?? []) {
        const isPostgres = ["postgres", "grafana-postgresql-datasource"].includes(ds.type);
        if (!isPostgres && ds.type !== "prometheus") continue;
        out.push({
          from: name,
          what: `datasource "${ds.name}" (${file})`,
          protocol: isPostgres ? "postgres" : "http",
          url: ds.url ?? "",
          user: ds.user,
          password: ds.secureJsonData?.password,
          database: ds.jsonData?.database,
        });
      }
    }
  }
  return out;
}

function provisioningFiles(p: Project, dir: string, kind: string): string[] {
  const full = path.resolve(p.ctx.dir, dir, kind);
  const names = new Set(fs.existsSync(full) ? fs.readdirSync(full) : []);
  for (const rel of Object.keys(p.ctx.files ?? {})) {
    if (path.posix.dirname(rel) === relPath(p, path.posix.join(dir, kind)))
      names.add(path.posix.basename(rel));
  }
  return [...names]
    .filter(n => /\.ya?ml$/.test(n))
    .sort()
    .map(n => path.posix.join(dir, kind, n));
}

/**
 * Grafana: its provisioning and dashboards are mounted from the repository, every variable they
 * use is set, and each Postgres datasource logs in as a role that exists (see checkReferences for
 * the hosts).
 */
export function checkGrafana(p: Project): string[] {
  const problems: string[] = [];
  for (const [name, s] of ofImage(p, "grafana/grafana-oss", "grafana/grafana")) {
    const env = envOf(s);
    const dir = grafanaProvisioning(s);
    if (!dir || !fileExists(p, dir)) {
      problems.push(`${name}: GF_PATHS_PROVISIONING is mounted from no folder of the repository`);
      continue;
    }
    const files = [...provisioningFiles(p, dir, "datasources"), ...provisioningFiles(p, dir, "dashboards")];
    if (files.length === 0) problems.push(`${name}: ${dir} provisions nothing`);
    for (const file of files) {
      const text = readFile(p, file);
      for (const m of text.matchAll(/\$\{(\w+)\}|\$(\w+)/g)) {
        const key = m[1] ?? m[2];
        if (!key.startsWith("__") && env[key] === undefined)
          problems.push(`${name}: ${file} uses \${${key}}, which its environment does not set`);
      }
      const providers = (
        parseYaml(substitute(text, env)) as { providers?: { options?: { path?: string } }[] }
      ).providers;
      for (const provider of providers ?? []) {
        const inside = provider.options?.path ?? "";
        const host = hostPathOf(s, inside);
        if (!host || !fileExists(p, host))
          problems.push(`${name}: dashboards folder ${inside} is mounted from no folder of the repository`);
      }
    }
    for (const ds of grafanaDatasources(p).filter(d => d.from === name && d.protocol === "postgres")) {
      const [r] = addressReference(name, ds.what, ds.url, "postgres");
      const pg = r && p.model.services[r.host];
      if (!pg) continue;
      const problem = postgresLogin(p, r.host, pg, ds.user ?? "", ds.password ?? "", ds.database ?? "");
      if (problem) problems.push(`${name}: ${ds.what} ${problem}`);
    }
  }
  return problems;
}

/** Roles (and passwords) created by SQL scripts mounted into the image's initdb folder. */
function initdbRoles(p: Project, service: Service): Map<string, string> {
  const roles = new Map<string, string>();
  for (const m of mountsOf(service)) {
    if (m.type !== "bind" || !m.source || !m.target.startsWith("/docker-entrypoint-initdb.d")) continue;
    if (!fileExists(p, m.source) || !m.source.endsWith(".sql")) continue;
    const sql = readFile(p, m.source);
    for (const c of sql.matchAll(/CREATE\s+(?:ROLE|USER)\s+"?(\w+)"?[^;]*?\bPASSWORD\s+'([^']*)'/gi))
      roles.set(c[1], c[2]);
  }
  return roles;
}

/** Why user/password/database would not log in to a postgres service, or undefined if they would. */
function postgresLogin(
  p: Project,
  name: string,
  pg: Service,
  user: string,
  /** Undefined: asked for at login, not configured. */
  password: string | undefined,
  database: string,
): string | undefined {
  const env = envOf(pg);
  const owner = env.POSTGRES_USER ?? "postgres";
  const db = env.POSTGRES_DB ?? owner;
  if (database !== db) return `uses database "${database}", but ${name} creates "${db}" (POSTGRES_DB)`;
  const roles = initdbRoles(p, pg);
  if (user !== owner && !roles.has(user))
    return `logs in as ${user}, a role ${name} neither is (POSTGRES_USER) nor creates`;
  const expected = user === owner ? env.POSTGRES_PASSWORD : roles.get(user);
  if (password === undefined || password === expected) return undefined;
  return user === owner
    ? `logs in as ${user} with a password other than ${name}'s POSTGRES_PASSWORD`
    : `logs in as ${user} with a password other than the one ${name}'s init script gives it`;
}

/** DATABASE_URL logs in to the postgres service with its POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB. */
export function checkDatabaseCredentials(p: Project): string[] {
  const problems: string[] = [];
  for (const [name, s] of appServices(p)) {
    const url = envOf(s).DATABASE_URL;
    if (!url) continue;
    const u = new URL(url);
    const pg = p.model.services[u.hostname];
    if (!pg) continue;
    const db = decodeURIComponent(u.pathname.replace(/^\//, ""));
    const problem = postgresLogin(
      p,
      u.hostname,
      pg,
      decodeURIComponent(u.username),
      decodeURIComponent(u.password),
      db,
    );
    if (problem) problems.push(`${name}: DATABASE_URL ${problem}`);
  }
  return problems;
}

interface PgAdminServer {
  Name: string;
  Host: string;
  Port: number;
  MaintenanceDB: string;
  Username: string;
  ConnectionParameters?: { passfile?: string };
}

/** pgAdmin's servers.json registers services of this file, and its pgpass holds their passwords. */
export function checkPgAdmin(p: Project): string[] {
  const problems: string[] = [];
  for (const [name, s] of ofImage(p, "dpage/pgadmin4")) {
    const env = envOf(s);
    const serversFile = hostPathOf(s, env.PGADMIN_SERVER_JSON_FILE ?? "/pgadmin4/servers.json");
    if (!serversFile || !fileExists(p, serversFile)) {
      problems.push(`${name}: no servers.json is mounted, so no server is registered`);
      continue;
    }
    const passFile = env.PGPASS_FILE ? hostPathOf(s, env.PGPASS_FILE) : undefined;
    if (env.PGPASS_FILE && (!passFile || !fileExists(p, passFile)))
      problems.push(`${name}: PGPASS_FILE ${env.PGPASS_FILE} is mounted from no file of the repository`);
    const pgpass = (passFile && fileExists(p, passFile) ? readFile(p, passFile) : "")
      .split("\n")
      .filter(l => l.trim() && !l.startsWith("#"))
      .map(l => l.split(":"));
    const servers = (JSON.parse(readFile(p, serversFile)) as { Servers: Record<string, PgAdminServer> })
      .Servers;
    for (const server of Object.values(servers)) {
      const what = `${serversFile} server "${server.Name}"`;
      const r: Reference = { from: name, what, host: server.Host, port: server.Port, protocol: "postgres" };
      const unreachable = checkReference(p, r);
      problems.push(...unreachable);
      const pg = p.model.services[server.Host];
      if (unreachable.length > 0 || !pg) continue;
      const match = (field: string, value: string | number) => field === "*" || field === String(value);
      const line = pgpass.find(
        ([h, port, db, user]) =>
          match(h, server.Host) &&
          match(port, server.Port) &&
          match(db, server.MaintenanceDB) &&
          match(user, server.Username),
      );
      if (server.ConnectionParameters?.passfile && !line) {
        problems.push(`${name}: ${what} has a passfile, but the pgpass file has no line for it`);
        continue;
      }
      const problem = postgresLogin(p, server.Host, pg, server.Username, line?.[4], server.MaintenanceDB);
      if (problem) problems.push(`${name}: ${what} ${problem}`);
    }
  }
  return problems;
}

/** Where each stateful image keeps its data, to be on a named volume. */
function dataDirsOf(service: Service): string[] {
  const env = envOf(service);
  const args = argsOf(service);
  switch (repositoryOf(service)) {
    case "postgres":
      return [env.PGDATA ?? "/var/lib/postgresql/data"];
    case "redis":
      return [argValue(args, "--dir") ?? "/data"];
    case "apache/kafka":
      return (env.KAFKA_LOG_DIRS ?? env.KAFKA_LOG_DIR ?? "/tmp/kraft-combined-logs").split(",");
    case "prom/prometheus":
      return [argValue(args, "--storage.tsdb.path") ?? "/prometheus"];
    case "grafana/grafana-oss":
    case "grafana/grafana":
      return [env.GF_PATHS_DATA ?? "/var/lib/grafana"];
    default:
      return [];
  }
}

/** Named volumes are declared and used; Kafka, Postgres, Redis, Prometheus and Grafana keep data on them. */
export function checkVolumes(p: Project): string[] {
  const problems: string[] = [];
  const declared = new Set(Object.keys(p.model.volumes ?? {}));
  const used = new Set<string>();
  for (const [name, s] of entries(p)) {
    const named = mountsOf(s).filter(m => m.type === "volume" && m.source);
    for (const m of named) {
      used.add(m.source!);
      if (!declared.has(m.source!))
        problems.push(`${name}: volume ${m.source} is not declared under volumes:`);
    }
    for (const dir of dataDirsOf(s)) {
      const on = named.some(m => dir === m.target || dir.startsWith(`${m.target}/`));
      if (!on)
        problems.push(`${name}: its data (${dir}) is on no named volume, so it goes with the container`);
    }
  }
  for (const v of declared)
    if (!used.has(v)) problems.push(`volume ${v} is declared but no service mounts it`);
  return problems;
}

/** Files and folders mounted or built from exist in the repository. */
export function checkBindMounts(p: Project): string[] {
  const problems: string[] = [];
  for (const [name, s] of entries(p)) {
    for (const m of mountsOf(s))
      if (m.type === "bind" && m.source && !fileExists(p, m.source))
        problems.push(`${name}: mounts ${m.source}, which does not exist`);
    if (s.build === undefined) continue;
    const context = typeof s.build === "string" ? s.build : (s.build.context ?? ".");
    const dockerfile = typeof s.build === "string" ? "Dockerfile" : (s.build.dockerfile ?? "Dockerfile");
    if (!fileExists(p, path.posix.join(context, dockerfile)))
      problems.push(`${name}: builds ${path.posix.join(context, dockerfile)}, which does not exist`);
  }
  return problems;
}

/** Version components a tag must have to name one release: two where releases are major.minor. */
const VERSION_PARTS: Record<string, number> = { postgres: 2, "dpage/pgadmin4": 2 };

/** Every image names one release: a full version tag, a digest, or both; never latest or a floating tag. */
export function checkImages(p: Project): string[] {
  const problems: string[] = [];
  for (const [name, s] of entries(p)) {
    if (!s.image) {
      if (!isApp(s)) problems.push(`${name}: has neither image nor build`);
      continue;
    }
    const ref = parseImage(s.image);
    if (ref.digest && !/^sha256:[a-f0-9]{64}$/.test(ref.digest))
      problems.push(`${name}: ${s.image} has a malformed digest`);
    if (isApp(s)) {
      if (ref.tag !== p.ctx.appVersion)
        problems.push(`${name}: builds ${s.image}, but package.json's version is ${p.ctx.appVersion}`);
      continue;
    }
    if (ref.tag === undefined) {
      if (!ref.digest) problems.push(`${name}: ${s.image} has no tag (it means latest)`);
      continue;
    }
    if (ref.tag === "latest") {
      problems.push(`${name}: ${s.image} is not pinned (latest)`);
      continue;
    }
    const version = /^v?(\d+(?:\.\d+)*)(?:-[\w.]+)?$/.exec(ref.tag);
    const wanted = VERSION_PARTS[ref.repository] ?? 3;
    // Beside a digest too: the tag is what a reader takes the digest for, so it names one release.
    if (!version || version[1].split(".").length < wanted) {
      problems.push(
        `${name}: ${s.image} is a floating tag; pin a full version (${wanted} components) or a digest alone`,
      );
    }
  }
  return problems;
}

/** The profiles this file uses, and the debugging tools that must stay in "debug". */
export const KNOWN_PROFILES = ["debug"];
const DEBUG_IMAGES = ["kafbat/kafka-ui", "provectuslabs/kafka-ui", "dpage/pgadmin4"];

/** Debug tools run only with --profile debug; nothing that always runs needs a profiled service. */
export function checkProfiles(p: Project): string[] {
  const problems: string[] = [];
  const profiled = (name: string) => (p.model.services[name]?.profiles ?? []).length > 0;
  for (const [name, s] of entries(p)) {
    const profiles = s.profiles ?? [];
    for (const profile of profiles)
      if (!KNOWN_PROFILES.includes(profile)) problems.push(`${name}: unknown profile "${profile}"`);
    if (DEBUG_IMAGES.includes(repositoryOf(s)) && (profiles.length !== 1 || profiles[0] !== "debug"))
      problems.push(`${name}: a debugging tool, but it runs outside the debug profile (profiles: [debug])`);
    if (profiles.length > 0) continue;
    for (const dep of Object.keys(dependsOf(s)))
      if (profiled(dep))
        problems.push(`${name}: always runs, but depends on ${dep}, which runs only in a profile`);
  }
  for (const r of references(p))
    if (!profiled(r.from) && profiled(r.host))
      problems.push(`${r.from}: always runs, but ${r.what} names ${r.host}, which runs only in a profile`);
  return problems;
}

function hasHealthcheck(p: Project, service: Service): boolean {
  const h = service.healthcheck;
  if (h && (h.disable === true || h.disable === "true")) return false;
  if (h?.test !== undefined) {
    const test = Array.isArray(h.test) ? h.test : [h.test];
    return test.length > 0 && test[0] !== "NONE" && test.join("").trim() !== "";
  }
  return isApp(service) && p.ctx.appImageHealthcheck;
}

/** A service waits for the health of every server it is configured to use, which has a healthcheck. */
export function checkHealth(p: Project): string[] {
  const problems: string[] = [];
  for (const [name, s] of entries(p)) {
    const deps = dependsOf(s);
    for (const [dep, condition] of Object.entries(deps)) {
      const target = p.model.services[dep];
      if (!target) problems.push(`${name}: depends on ${dep}, which is no service of this file`);
      else if (condition === "service_healthy" && !hasHealthcheck(p, target))
        problems.push(`${name}: waits for ${dep} to be healthy, but ${dep} has no healthcheck`);
    }
  }
  for (const r of references(p)) {
    if (!p.model.services[r.host] || r.host === r.from) continue;
    if (dependsOf(p.model.services[r.from])[r.host] !== "service_healthy")
      problems.push(
        `${r.from}: uses ${r.host} (${r.what}) without waiting for it (condition: service_healthy)`,
      );
  }
  return problems;
}

const RESTART = /^(always|unless-stopped|on-failure(:\d+)?)$/;

/** Every service comes back after a crash or a Docker restart. */
export function checkRestart(p: Project): string[] {
  return entries(p)
    .filter(([, s]) => !RESTART.test(s.restart ?? "no"))
    .map(
      ([name, s]) => `${name}: restart is "${s.restart ?? "no"}"; use unless-stopped, always or on-failure`,
    );
}

/** Redis persists the snapshots (AOF) and, full, refuses writes instead of evicting a snapshot. */
export function checkRedis(p: Project): string[] {
  const problems: string[] = [];
  for (const [name, s] of ofImage(p, "redis")) {
    const args = argsOf(s);
    if (argValue(args, "--appendonly") !== "yes") problems.push(`${name}: AOF is off (--appendonly yes)`);
    const maxmemory = argValue(args, "--maxmemory");
    if (!maxmemory || /^0\w*$/.test(maxmemory)) problems.push(`${name}: no --maxmemory bound`);
    if (argValue(args, "--maxmemory-policy") !== "noeviction")
      problems.push(
        `${name}: --maxmemory-policy must be noeviction (an evicted snapshot is lost actor state)`,
      );
  }
  return problems;
}

/** Docker waits longer than a node's own shutdown (SHUTDOWN_GRACE_MS plus bin/start.ts's margin). */
export function checkStopGrace(p: Project): string[] {
  const problems: string[] = [];
  for (const [name, s] of appServices(p)) {
    const config = configOf(p, s);
    if (config instanceof Error) continue;
    const needed = config.actors.shutdownGraceMs + p.ctx.shutdownMarginMs;
    const granted = durationMs(s.stop_grace_period ?? "10s");
    if (granted <= needed)
      problems.push(
        `${name}: stop_grace_period ${s.stop_grace_period ?? "10s (default)"} is not above ${needed} ms`,
      );
  }
  return problems;
}

/** Actors nodes beyond the topic's partition count would own nothing; replicas need unique names. */
export function checkReplicas(p: Project): string[] {
  const problems: string[] = [];
  let actors = 0;
  let partitions = Infinity;
  for (const [name, s] of appServices(p)) {
    const config = configOf(p, s);
    if (config instanceof Error || !config.services.includes("actors")) continue;
    actors += replicasOf(s);
    partitions = Math.min(partitions, config.kafka.partitions);
    if (replicasOf(s) > 1 && s.container_name)
      problems.push(`${name}: container_name "${s.container_name}" cannot name ${replicasOf(s)} replicas`);
  }
  if (actors > partitions)
    problems.push(`${actors} actors nodes for ${partitions} partitions (KAFKA_PARTITIONS)`);
  return problems;
}

export const CHECKS = {
  checkEnvironmentNames,
  checkAppConfig,
  checkReferences,
  checkKafka,
  checkPublishedPorts,
  checkPrometheus,
  checkGrafana,
  checkDatabaseCredentials,
  checkPgAdmin,
  checkVolumes,
  checkBindMounts,
  checkImages,
  checkProfiles,
  checkHealth,
  checkRestart,
  checkRedis,
  checkStopGrace,
  checkReplicas,
};

/** Every check's problems, each line prefixed by the check's name. */
export function composeProblems(p: Project): string[] {
  return Object.entries(CHECKS).flatMap(([check, run]) => run(p).map(problem => `${check}: ${problem}`));
}

// ---------------------------------------------------------------------------------------------
// lib/config.ts, read as source

/** The names of the `variable("NAME", ...)` entries of `DECLARED` in lib/config.ts: the variables the app reads. */
export function configVariablesFromSource(source: string): string[] {
  const start = source.search(/\bDECLARED\s*=\s*\{/);
  if (start < 0) throw new Error("lib/config.ts: no `DECLARED = {` found");
  const names: string[] = [];
  let depth = 0;
  for (let i = source.indexOf("{", start); i < source.length; i++) {
    const c = source[i];
    const entry = /^variable\(\s*"([A-Z][A-Z0-9_]*)"/.exec(source.slice(i, i + 80));
    if (entry && !/\w/.test(source[i - 1])) names.push(entry[1]);
    if (source.startsWith("//", i)) i = source.indexOf("\n", i);
    else if (source.startsWith("/*", i)) i = source.indexOf("*/", i) + 1;
    else if (c === '"' || c === "'" || c === "`") i = closingQuote(source, i);
    else if (c === "{" || c === "(" || c === "[") depth++;
    else if ((c === "}" || c === ")" || c === "]") && --depth === 0) return names;
    if (i < 0) break;
  }
  throw new Error("lib/config.ts: the object DECLARED does not close");
}

/** Index of the quote that closes the string opened at `open`, or -1. */
function closingQuote(source: string, open: number): number {
  for (let i = open + 1; i < source.length; i++) {
    if (source[i] === "\\") i++;
    else if (source[i] === source[open]) return i;
  }
  return -1;
}
