import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseAllDocuments } from "yaml";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IStatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import type { IHorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import type { INetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import type { IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { IEnvVar } from "kubernetes-models/v1/EnvVar";
import type { IPodTemplateSpec } from "kubernetes-models/v1/PodTemplateSpec";
import type { IProbe } from "kubernetes-models/v1/Probe";
import type { ISecret } from "kubernetes-models/v1/Secret";
import type { IService } from "kubernetes-models/v1/Service";
import { Resources } from "../../../adapters/resources";
import { ALL_SERVICES, CONFIG_VARIABLES, loadConfig, type Config } from "../../../lib/config";
import { ACTORS_HEALTH_PATHS } from "../../../services/actors/metrics-port";
import createGatewayService from "../../../services/gateway.service";
import { schemaErrors, unknownFields } from "./kube-schema";
import { metricsEndpoint } from "./metric-series";
import { isRecord, listFiles, readText, readYamlDocuments, rel, ROOT } from "./repo-files";

/**
 * Static checks of k8s/ (no cluster here): schema, cross-references between the objects, and
 * agreement with the code they deploy: lib/config.ts, the gateway's routes, the metrics
 * reporter, the shutdown sequence of bin/start.ts.
 */

interface Meta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface Manifest {
  file: string;
  index: number;
  object: Record<string, unknown> & { apiVersion?: string; kind?: string; metadata?: Meta };
}

interface Kustomization {
  kind?: string;
  namespace?: string;
  resources?: string[];
  components?: string[];
  images?: { name: string; newName?: string; newTag?: string; digest?: string }[];
  patches?: { target?: { kind?: string; name?: string }; patch?: string; path?: string }[];
}

interface Workload {
  file: string;
  kind: string;
  name: string;
  namespace?: string;
  replicas?: number;
  selector: Record<string, string>;
  template: IPodTemplateSpec;
}

const K8S_DIR = path.join(ROOT, "k8s");
const yamlFiles = listFiles(K8S_DIR, [".yaml", ".yml"]);
const kustomizationFiles = yamlFiles.filter(f => path.basename(f) === "kustomization.yaml");
const isTemplate = (file: string) => /\.template\.ya?ml$/.test(file);

const manifests: Manifest[] = yamlFiles
  .filter(f => !kustomizationFiles.includes(f))
  .flatMap(f => readYamlDocuments(f))
  .map(d => ({ file: d.file, index: d.index, object: d.value as Manifest["object"] }));
/** What kustomize applies: every manifest but the templates. */
const applied = manifests.filter(m => !isTemplate(m.file));

const kustomizations = new Map(
  kustomizationFiles.map(f => [rel(path.dirname(f)), readYamlDocuments(f)[0].value as Kustomization]),
);
const baseKustomization = kustomizations.get("k8s")!;
/** The image name every container of this project uses (kustomize rewrites it per environment). */
const APP_IMAGE = baseKustomization.images?.[0]?.name ?? "(no images entry in k8s/kustomization.yaml)";

const ofKind = <T>(kind: string, list = applied) =>
  list.filter(m => m.object.kind === kind).map(m => ({ file: m.file, object: m.object as unknown as T }));

const workloads: Workload[] = [
  ...ofKind<IDeployment>("Deployment").map(({ file, object }) => ({ file, kind: "Deployment", object })),
  ...ofKind<IStatefulSet>("StatefulSet").map(({ file, object }) => ({ file, kind: "StatefulSet", object })),
].map(({ file, kind, object }) => ({
  file,
  kind,
  name: object.metadata?.name ?? "",
  namespace: object.metadata?.namespace,
  replicas: object.spec?.replicas,
  selector: object.spec?.selector.matchLabels ?? {},
  template: object.spec?.template ?? {},
}));

const deployment = (name: string) => {
  const found = workloads.find(w => w.kind === "Deployment" && w.name === name);
  if (!found) throw new Error(`no Deployment ${name} in k8s/`);
  return found;
};

const containersOf = (w: Workload): IContainer[] => w.template.spec?.containers ?? [];
const isAppContainer = (c: IContainer) => (c.image ?? "").split(":")[0] === APP_IMAGE;
const appWorkloads = workloads.filter(w => containersOf(w).some(isAppContainer));
const appContainers = appWorkloads.flatMap(w =>
  containersOf(w)
    .filter(isAppContainer)
    .map(c => ({ w, c })),
);

const configMaps = new Map(
  ofKind<IConfigMap>("ConfigMap").map(({ object }) => [object.metadata?.name, object]),
);
const secretTemplate = ofKind<ISecret>("Secret", manifests).find(s => isTemplate(s.file));
/** The dev stand-in for the real Secret (same name as the template), which k8s/dev/ applies. */
const devSecrets = ofKind<ISecret>("Secret").filter(
  s => s.file.startsWith("k8s/dev/") && s.object.metadata?.name === secretTemplate?.object.metadata?.name,
);

const secretKeys = (s: ISecret) => Object.keys({ ...(s.data ?? {}), ...(s.stringData ?? {}) });

const DEFAULTS = loadConfig({});
/** Variables Node.js itself reads, not lib/config.ts. */
const RUNTIME_VARIABLES = ["NODE_OPTIONS"];
const labelsMatch = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The environment a container sees: envFrom first, then env, the way the kubelet builds it. */
function containerEnv(c: IContainer, secret: ISecret | undefined): Record<string, string> {
  const secretValues = { ...(secret?.stringData ?? {}) };
  for (const [k, v] of Object.entries(secret?.data ?? {}))
    secretValues[k] = Buffer.from(v, "base64").toString();
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, configMaps.get(from.configMapRef.name)?.data ?? {});
    if (from.secretRef) Object.assign(env, secretValues);
  }
  for (const e of c.env ?? []) {
    const ref = e.valueFrom;
    if (e.value !== undefined) env[e.name] = e.value;
    else if (ref?.fieldRef?.fieldPath === "metadata.name") env[e.name] = "actors-7d9c5b6f4-x2x9q";
    else if (ref?.secretKeyRef && secretValues[ref.secretKeyRef.key] !== undefined) {
      env[e.name] = secretValues[ref.secretKeyRef.key];
    } else if (ref?.configMapKeyRef) {
      const value = configMaps.get(ref.configMapKeyRef.name)?.data?.[ref.configMapKeyRef.key];
      if (value !== undefined) env[e.name] = value;
    }
  }
  return env;
}

const configOf = (c: IContainer, secret = secretTemplate?.object): Config =>
  loadConfig(containerEnv(c, secret));

/** The container port a probe or Service port names, by name or number; undefined if it declares none. */
function portNumber(c: IContainer, port: number | string | undefined): number | undefined {
  return c.ports?.find(p => (typeof port === "number" ? p.containerPort === port : p.name === port))
    ?.containerPort;
}

const probesOf = (c: IContainer): [string, IProbe][] =>
  (["startupProbe", "livenessProbe", "readinessProbe"] as const)
    .filter(kind => c[kind])
    .map(kind => [kind, c[kind]!] as [string, IProbe]);

/** GET paths the gateway serves, from the route table of services/gateway.service.ts. */
function gatewayGetPaths(): Set<string> {
  const config = loadConfig({ DATA_DIR: "memory" });
  const quiet = () => undefined;
  const resources = new Resources(config, { info: quiet, warn: quiet, error: quiet, debug: quiet });
  const schema = createGatewayService({ config, resources });
  const routes = (schema.settings as { routes: { path?: string; aliases?: Record<string, unknown> }[] })
    .routes;
  const paths = new Set<string>();
  for (const route of routes) {
    for (const alias of Object.keys(route.aliases ?? {})) {
      const [method, aliasPath] = alias.includes(" ") ? alias.split(/\s+/) : ["*", alias];
      if (!["GET", "*", "ALL", "REST"].includes(method.toUpperCase())) continue;
      paths.add(`/${route.path ?? ""}/${aliasPath}`.replace(/\/+/g, "/").replace(/(.)\/$/, "$1"));
    }
  }
  return paths;
}

/**
 * An image named by a digest or an exact release: major.minor.patch with an optional suffix such as
 * -alpine, or major.minor for Postgres, whose releases have two numbers. `nats:2.10-alpine` or
 * `postgres:17` float.
 */
function isPinnedImage(image: string): boolean {
  return (
    /@sha256:[a-f0-9]{64}$/.test(image) ||
    /^[\w./-]+:v?\d+\.\d+\.\d+(-[\w.]+)?$/.test(image) ||
    /^(docker\.io\/)?(library\/)?postgres:\d+\.\d+(-[\w.]+)?$/.test(image)
  );
}

const podSpecOf = (w: Workload) => w.template.spec ?? { containers: [] };

/** Bytes of a Kubernetes memory quantity (512Mi, 1Gi, 1G, 500M). */
function quantityBytes(q: string | number | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q ?? ""));
  if (!m) return NaN;
  const unit: Record<string, number> = {
    "": 1,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  return Number(m[1]) * unit[m[2] ?? ""];
}

/** Bytes of a Redis memory setting (384mb, 1gb, 100000). */
function redisBytes(v: string | undefined): number {
  const m = /^(\d+)(b|kb|k|mb|m|gb|g)?$/i.exec(v ?? "");
  if (!m) return NaN;
  const unit: Record<string, number> = {
    "": 1,
    b: 1,
    k: 1e3,
    kb: 2 ** 10,
    m: 1e6,
    mb: 2 ** 20,
    g: 1e9,
    gb: 2 ** 30,
  };
  return Number(m[1]) * unit[(m[2] ?? "").toLowerCase()];
}

/** Value following `--flag` in an argument list (Redis, NATS). */
const argAfter = (args: string[], flag: string) => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};

/** host and port of every server a container's configuration names (Kafka brokers and URLs). */
function dependenciesOf(config: Config): { what: string; host: string; port: number }[] {
  const out: { what: string; host: string; port: number }[] = [];
  for (const broker of config.kafka.brokers ?? []) {
    const [host, port] = broker.split(":");
    out.push({ what: "Kafka", host, port: Number(port || 9092) });
  }
  const urls: [string, string | undefined, number][] = [
    ["NATS", config.natsUrl, 4222],
    ["Postgres", config.databaseUrl, 5432],
    ["Redis", config.redisUrl, 6379],
  ];
  for (const [what, url, defaultPort] of urls) {
    if (!url) continue;
    const u = new URL(url);
    out.push({ what, host: u.hostname, port: Number(u.port || defaultPort) });
  }
  return out;
}

const networkPolicies = ofKind<INetworkPolicy>("NetworkPolicy");
/** The policies of the namespace that select pods with these labels, for one direction. */
const policiesFor = (labels: Record<string, string> | undefined, type: "Ingress" | "Egress") =>
  networkPolicies
    .map(p => p.object)
    .filter(p => p.spec?.policyTypes?.includes(type))
    .filter(p => {
      const selector = p.spec?.podSelector?.matchLabels ?? {};
      return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
    });

/** Whether the policies let a pod with `labels` send (Egress) or accept (Ingress) TCP/UDP on `port`. */
function allows(
  labels: Record<string, string> | undefined,
  type: "Ingress" | "Egress",
  port: number,
  protocol = "TCP",
  peer?: (peers: unknown) => boolean,
): boolean {
  return policiesFor(labels, type).some(p =>
    (type === "Ingress" ? (p.spec?.ingress ?? []) : (p.spec?.egress ?? [])).some(rule => {
      const { from, to } = rule as { from?: unknown; to?: unknown };
      const peers = type === "Ingress" ? from : to;
      const portOk = (rule.ports ?? [{ port, protocol }]).some(
        rp => (rp.protocol ?? "TCP") === protocol && (rp.port === undefined || rp.port === port),
      );
      return portOk && (peer ? peer(peers) : true);
    }),
  );
}

/** Pod Security Standards, "restricted" profile: what a pod violates (the checks its spec can fail). */
function restrictedViolations(w: Workload): string[] {
  const spec = podSpecOf(w);
  const problems: string[] = [];
  const podSc = spec.securityContext ?? {};
  if (spec.hostNetwork || spec.hostPID || spec.hostIPC) problems.push("host namespaces");
  for (const v of spec.volumes ?? []) if (v.hostPath) problems.push(`hostPath volume ${v.name}`);
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    const sc = c.securityContext ?? {};
    const where = `${w.name}/${c.name}`;
    if ((sc.runAsNonRoot ?? podSc.runAsNonRoot) !== true) problems.push(`${where}: runAsNonRoot`);
    if ((sc.runAsUser ?? podSc.runAsUser) === 0) problems.push(`${where}: runAsUser 0`);
    const seccomp = (sc.seccompProfile ?? podSc.seccompProfile)?.type;
    if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") problems.push(`${where}: seccompProfile`);
    if (sc.allowPrivilegeEscalation !== false) problems.push(`${where}: allowPrivilegeEscalation`);
    if (sc.privileged) problems.push(`${where}: privileged`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) problems.push(`${where}: capabilities.drop ALL`);
    for (const cap of sc.capabilities?.add ?? [])
      if (cap !== "NET_BIND_SERVICE") problems.push(`${where}: adds ${cap}`);
    for (const p of c.ports ?? []) if (p.hostPort) problems.push(`${where}: hostPort ${p.hostPort}`);
  }
  return problems;
}

/** A YAML text in a temporary file, read back by the helpers that read files. */
function writeTemp(text: string): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "stock-patch-")), "patch.yaml");
  fs.writeFileSync(file, text);
  return file;
}

/**
 * A container with a strategic-merge patch of its env applied, as kustomize does: entries merge by
 * name, `$patch: delete` removes one, new ones come first.
 */
function mergeEnv(c: IContainer, patch: (IEnvVar & { $patch?: string })[]): IContainer {
  const byName = new Map(patch.map(e => [e.name, e]));
  const kept = (c.env ?? [])
    .filter(e => byName.get(e.name)?.$patch !== "delete")
    .map(e => (byName.has(e.name) ? { ...e, ...byName.get(e.name) } : e));
  const added = patch.filter(e => !e.$patch && !(c.env ?? []).some(x => x.name === e.name));
  return { ...c, env: [...added, ...kept] };
}

describe("Kubernetes manifests (k8s/)", () => {
  it("parses every YAML document and each names its apiVersion, kind and metadata.name", () => {
    expect(manifests.length).toBeGreaterThan(0);
    const problems = manifests
      .filter(m => !isRecord(m.object) || !m.object.apiVersion || !m.object.kind || !m.object.metadata?.name)
      .map(m => `${m.file}#${m.index}`);
    expect(problems).toEqual([]);
    for (const k of kustomizations.values())
      if (k.kind !== "Component") expect(k).toMatchObject({ resources: expect.any(Array) });
  });

  it("validates every object against the Kubernetes schema (kubernetes-models)", () => {
    const problems = manifests.flatMap(m =>
      schemaErrors(m.object).map(
        e => `${m.file}#${m.index} ${m.object.kind}/${m.object.metadata?.name}: ${e}`,
      ),
    );
    expect(problems).toEqual([]);
  });

  it("sets no field the Kubernetes schema does not declare (strict field validation)", () => {
    const problems = manifests.flatMap(m => unknownFields(m.object).map(f => `${m.file}#${m.index}: ${f}`));
    expect(problems).toEqual([]);
  });

  it("lists every manifest in its directory's kustomization, applies no template, names only existing files", () => {
    for (const [dir, k] of kustomizations) {
      const abs = path.join(ROOT, dir);
      const beside = fs
        .readdirSync(abs)
        .filter(f => /\.ya?ml$/.test(f) && f !== "kustomization.yaml")
        .sort();
      const listed = (k.resources ?? []).filter(r => /\.ya?ml$/.test(r));
      expect({ dir, listed: [...listed].sort() }).toEqual({
        dir,
        listed: beside.filter(f => !isTemplate(f)),
      });
      for (const r of k.resources ?? [])
        expect({ dir, resource: r, exists: fs.existsSync(path.join(abs, r)) }).toEqual({
          dir,
          resource: r,
          exists: true,
        });
    }
  });

  it("puts every object in the namespace its kustomization sets", () => {
    const problems: string[] = [];
    for (const m of manifests) {
      const k = kustomizations.get(path.dirname(m.file));
      const ns = k?.namespace;
      if (!ns) {
        problems.push(`${m.file}: its directory has no kustomization.yaml with a namespace`);
        continue;
      }
      const actual = m.object.kind === "Namespace" ? m.object.metadata?.name : m.object.metadata?.namespace;
      if (actual !== ns)
        problems.push(`${m.file} ${m.object.kind}/${m.object.metadata?.name}: ${actual} != ${ns}`);
    }
    expect(problems).toEqual([]);
  });

  it("names each object once per kind and namespace", () => {
    const seen = applied.map(
      m => `${m.object.metadata?.namespace ?? ""}/${m.object.kind}/${m.object.metadata?.name}`,
    );
    expect(seen.filter((id, i) => seen.indexOf(id) !== i)).toEqual([]);
  });

  it("keeps the workload selectors equal to their own pod template labels", () => {
    for (const w of workloads) {
      expect({
        workload: `${w.kind}/${w.name}`,
        matches: labelsMatch(w.selector, w.template.metadata?.labels),
      }).toEqual({
        workload: `${w.kind}/${w.name}`,
        matches: true,
      });
    }
  });

  it("selects with every Service the pods of a workload in its namespace, on ports those pods declare", () => {
    for (const { file, object: svc } of ofKind<IService>("Service")) {
      const selected = workloads.filter(
        w =>
          w.namespace === svc.metadata?.namespace &&
          labelsMatch(svc.spec?.selector ?? {}, w.template.metadata?.labels),
      );
      expect({ service: `${file} ${svc.metadata?.name}`, selects: selected.length > 0 }).toEqual({
        service: `${file} ${svc.metadata?.name}`,
        selects: true,
      });
      for (const port of svc.spec?.ports ?? []) {
        const target = port.targetPort ?? port.port;
        for (const w of selected) {
          const declared = containersOf(w).some(c => portNumber(c, target) !== undefined);
          expect({ service: svc.metadata?.name, workload: w.name, target, declared }).toEqual({
            service: svc.metadata?.name,
            workload: w.name,
            target,
            declared: true,
          });
        }
      }
    }
  });

  describe("the app's containers", () => {
    it("run the image the kustomization names, in both app workloads", () => {
      expect(APP_IMAGE).toBe("stock-actors");
      expect(appWorkloads.map(w => w.name).sort()).toEqual(["actors", "gateway"]);
    });

    it("read only variables lib/config.ts reads, from a ConfigMap and Secret that exist", () => {
      const problems: string[] = [];
      for (const [name, cm] of configMaps) {
        if (!appContainers.some(({ c }) => c.envFrom?.some(f => f.configMapRef?.name === name))) continue;
        for (const key of Object.keys(cm.data ?? {})) {
          if (!CONFIG_VARIABLES.includes(key)) problems.push(`ConfigMap ${name}: ${key}`);
        }
      }
      for (const { w, c } of appContainers) {
        for (const e of c.env ?? [])
          if (!CONFIG_VARIABLES.includes(e.name) && !RUNTIME_VARIABLES.includes(e.name))
            problems.push(`${w.name}: env ${e.name}`);
        for (const from of c.envFrom ?? []) {
          if (from.prefix) problems.push(`${w.name}: envFrom prefix ${from.prefix}`);
          if (from.configMapRef && !configMaps.has(from.configMapRef.name)) {
            problems.push(`${w.name}: no ConfigMap ${from.configMapRef.name}`);
          }
          if (from.secretRef)
            problems.push(`${w.name}: secretRef imports every key; name them with secretKeyRef`);
        }
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (!ref) continue;
          for (const secret of [secretTemplate, ...devSecrets]) {
            if (!secret)
              problems.push(`${w.name}: ${e.name} reads Secret ${ref.name}, which no manifest defines`);
            else if (secret.object.metadata?.name !== ref.name) {
              problems.push(`${w.name}: ${e.name} reads Secret ${ref.name}, ${secret.file} defines another`);
            } else if (!ref.optional && !secretKeys(secret.object).includes(ref.key)) {
              problems.push(`${w.name}: ${e.name} reads ${ref.key}, missing from ${secret.file}`);
            }
          }
        }
      }
      expect(problems).toEqual([]);
    });

    it("get a valid configuration of a distributed node, with the template's and the dev Secret's values", () => {
      for (const { w, c } of appContainers) {
        for (const secret of [secretTemplate, ...devSecrets]) {
          const config = configOf(c, secret?.object);
          expect({
            workload: w.name,
            secret: secret?.file,
            kafka: Boolean(config.kafka.brokers?.length),
            nats: Boolean(config.natsUrl),
            postgres: Boolean(config.databaseUrl),
            redis: Boolean(config.redisUrl),
            demoFeed: config.demoFeed.enabled,
          }).toEqual({
            workload: w.name,
            secret: secret?.file,
            kafka: true,
            nats: true,
            postgres: true,
            redis: true,
            demoFeed: false,
          });
        }
      }
    });

    it("keeps the Secret template out of kustomize, with placeholders only, for variables lib/config.ts reads", () => {
      expect(secretTemplate).toBeDefined();
      const values = Object.entries(secretTemplate!.object.stringData ?? {});
      expect(values.map(([k]) => k).sort()).toEqual(["DATABASE_URL", "INGEST_TOKEN"]);
      for (const [key, value] of values) {
        expect({
          key,
          known: CONFIG_VARIABLES.includes(key),
          placeholder: value.includes("CHANGE-ME"),
        }).toEqual({
          key,
          known: true,
          placeholder: true,
        });
      }
      expect(secretTemplate!.object.data).toBeUndefined();
    });

    it("take NODE_ID from the pod name, so every Moleculer node ID is unique", () => {
      for (const { w, c } of appContainers) {
        const nodeId = c.env?.find(e => e.name === "NODE_ID");
        expect({ workload: w.name, fieldPath: nodeId?.valueFrom?.fieldRef?.fieldPath }).toEqual({
          workload: w.name,
          fieldPath: "metadata.name",
        });
      }
    });

    it("run gateway, ingest, query and notifier on the gateway pods and actors alone on the actors pods", () => {
      const services = (name: string) =>
        configOf(containersOf(deployment(name)).find(isAppContainer)!).services;
      expect(services("gateway")).toEqual(["gateway", "ingest", "query", "notifier"]);
      expect(services("actors")).toEqual(["actors"]);
      const everywhere = new Set(appContainers.flatMap(({ c }) => configOf(c).services));
      expect([...everywhere].sort()).toEqual([...ALL_SERVICES].sort());
    });

    it("expose the configured ports, which are lib/config.ts's defaults (5000 and 3030)", () => {
      expect([DEFAULTS.port, DEFAULTS.metricsPort]).toEqual([5000, 3030]);
      for (const { w, c } of appContainers) {
        const config = configOf(c);
        expect([config.port, config.metricsPort]).toEqual([DEFAULTS.port, DEFAULTS.metricsPort]);
        const ports = Object.fromEntries((c.ports ?? []).map(p => [p.name, p.containerPort]));
        const expected: Record<string, number> = { metrics: config.metricsPort };
        // Only a node running the gateway has an HTTP server on PORT.
        if (config.services.includes("gateway")) expected.http = config.port;
        expect({ workload: w.name, ports }).toEqual({ workload: w.name, ports: expected });
      }
    });

    it("probe over HTTP only paths the node serves: gateway routes on PORT, the reporter's path on METRICS_PORT", () => {
      const gatewayPaths = gatewayGetPaths();
      const problems: string[] = [];
      for (const { w, c } of appContainers) {
        const config = configOf(c);
        const reporter = metricsEndpoint(config);
        for (const [kind, probe] of probesOf(c)) {
          if (!probe.httpGet) continue;
          const port = portNumber(c, probe.httpGet.port);
          const where = `${w.name} ${kind} ${probe.httpGet.path} on ${port}`;
          if (port === config.port) {
            if (!config.services.includes("gateway")) problems.push(`${where}: this node runs no gateway`);
            else if (!gatewayPaths.has(probe.httpGet.path ?? "/"))
              problems.push(`${where}: not a gateway GET route`);
          } else if (port === config.metricsPort) {
            // The reporter's path, and the health endpoints of a node that runs the actors.
            const served = [reporter.path];
            if (config.services.includes("actors")) served.push(...Object.values(ACTORS_HEALTH_PATHS));
            if (!served.includes(probe.httpGet.path ?? "/"))
              problems.push(`${where}: METRICS_PORT serves ${served.join(", ")} here`);
          } else problems.push(`${where}: neither PORT nor METRICS_PORT`);
        }
      }
      expect(problems).toEqual([]);
    });

    it("check gateway readiness on /readyz and liveness on /healthz, both gateway routes", () => {
      const paths = gatewayGetPaths();
      expect(paths.has("/readyz") && paths.has("/healthz")).toBe(true);
      const c = containersOf(deployment("gateway")).find(isAppContainer)!;
      expect(c.readinessProbe?.httpGet?.path).toBe("/readyz");
      expect(c.livenessProbe?.httpGet?.path).toBe("/healthz");
      expect(c.startupProbe?.httpGet?.path).toBe("/healthz");
    });

    it("check actors readiness with GET /readyz on the metrics port (group membership and Kafka), not a script", () => {
      const c = containersOf(deployment("actors")).find(isAppContainer)!;
      const config = configOf(c);
      const probe = c.readinessProbe;
      expect(probe?.exec).toBeUndefined();
      expect(probe?.httpGet?.path).toBe(ACTORS_HEALTH_PATHS.readiness);
      expect(portNumber(c, probe?.httpGet?.port)).toBe(config.metricsPort);
      // Two failures at most: a pod cut from Kafka leaves readiness within a few periods.
      expect((probe?.periodSeconds ?? 10) * (probe?.failureThreshold ?? 3)).toBeLessThanOrEqual(30);
      expect(probe?.timeoutSeconds ?? 1).toBeGreaterThanOrEqual(3);
    });

    it("keep liveness and start-up probes off /readyz, so an outage of Kafka restarts no pod", () => {
      for (const { w, c } of appContainers) {
        for (const kind of ["startupProbe", "livenessProbe"] as const) {
          const path = c[kind]?.httpGet?.path;
          expect({ workload: w.name, kind, path, ok: path !== undefined && path !== "/readyz" }).toEqual({
            workload: w.name,
            kind,
            path,
            ok: true,
          });
        }
      }
    });

    it("give each node longer to stop than SHUTDOWN_GRACE_MS plus bin/start.ts's hard-exit margin (and preStop)", () => {
      const margin = /shutdownGraceMs \+ (\d+)/.exec(readText("bin/start.ts"));
      expect(margin).not.toBeNull();
      for (const { w, c } of appContainers) {
        const graceMs = configOf(c).actors.shutdownGraceMs;
        const preStop = c.lifecycle?.preStop?.exec?.command ?? [];
        const sleepSeconds = preStop[0] === "sleep" ? Number(preStop[1]) : 0;
        const needed = sleepSeconds + (graceMs + Number(margin![1])) / 1000;
        const granted = w.template.spec?.terminationGracePeriodSeconds ?? 30;
        expect({ workload: w.name, enough: granted > needed }).toEqual({ workload: w.name, enough: true });
      }
      expect(deployment("actors").template.spec?.terminationGracePeriodSeconds).toBeGreaterThan(
        DEFAULTS.actors.shutdownGraceMs / 1000,
      );
    });
  });

  it("lets one PodDisruptionBudget per app Deployment evict one pod at a time, unready pods always", () => {
    for (const name of ["gateway", "actors"]) {
      const w = deployment(name);
      const pdbs = ofKind<IPodDisruptionBudget>("PodDisruptionBudget").filter(({ object }) =>
        labelsMatch(object.spec?.selector?.matchLabels ?? {}, w.template.metadata?.labels),
      );
      expect({
        deployment: name,
        pdbs: pdbs.map(p => [p.object.spec?.maxUnavailable, p.object.spec?.unhealthyPodEvictionPolicy]),
      }).toEqual({ deployment: name, pdbs: [[1, "AlwaysAllow"]] });
    }
  });

  it("runs no more actors replicas than the topic has partitions (KAFKA_PARTITIONS)", () => {
    const actors = deployment("actors");
    const config = configOf(containersOf(actors).find(isAppContainer)!);
    expect(actors.replicas).toBe(3);
    expect(actors.replicas!).toBeLessThanOrEqual(config.kafka.partitions);
  });

  it("autoscales the gateway Deployment on CPU, which its containers request", () => {
    const hpas = ofKind<IHorizontalPodAutoscaler>("HorizontalPodAutoscaler").map(h => h.object);
    expect(hpas.map(h => h.spec?.scaleTargetRef)).toEqual([
      { apiVersion: "apps/v1", kind: "Deployment", name: "gateway" },
    ]);
    const [hpa] = hpas;
    expect(hpa.spec?.metrics?.map(m => m.resource?.name)).toEqual(["cpu"]);
    const gateway = deployment("gateway");
    expect(hpa.spec?.minReplicas).toBeGreaterThanOrEqual(2);
    for (const c of containersOf(gateway)) expect(c.resources?.requests?.cpu).toBeDefined();
  });

  it("leaves the replica count of an autoscaled Deployment to its HPA (no spec.replicas)", () => {
    const scaled = ofKind<IHorizontalPodAutoscaler>("HorizontalPodAutoscaler").map(
      h => h.object.spec?.scaleTargetRef.name,
    );
    expect(scaled.length).toBeGreaterThan(0);
    for (const name of scaled)
      expect({ deployment: name, replicas: deployment(name!).replicas }).toEqual({
        deployment: name,
        replicas: undefined,
      });
  });

  it("announces every node's metrics endpoint to Prometheus through a headless Service", () => {
    const reporter = metricsEndpoint(DEFAULTS);
    const services = ofKind<IService>("Service")
      .map(s => s.object)
      .filter(s => s.metadata?.annotations?.["prometheus.io/scrape"] === "true");
    expect(services).toHaveLength(1);
    const [svc] = services;
    expect(svc.metadata?.annotations).toMatchObject({
      "prometheus.io/port": String(DEFAULTS.metricsPort),
      "prometheus.io/path": reporter.path,
    });
    expect(svc.spec).toMatchObject({ clusterIP: "None", publishNotReadyAddresses: true });
    expect(svc.spec?.ports?.map(p => p.port)).toEqual([DEFAULTS.metricsPort]);
    for (const w of appWorkloads)
      expect(labelsMatch(svc.spec?.selector ?? {}, w.template.metadata?.labels)).toBe(true);
  });

  it("turns off service links and sets resource requests and a memory limit on every container", () => {
    const problems: string[] = [];
    for (const w of workloads) {
      if (w.template.spec?.enableServiceLinks !== false) problems.push(`${w.name}: enableServiceLinks`);
      for (const c of containersOf(w)) {
        const r = c.resources;
        if (!r?.requests?.cpu || !r.requests.memory || !r.limits?.memory)
          problems.push(`${w.name}/${c.name}: resources`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("runs the app as a non-root user without privilege escalation, on a read-only root filesystem", () => {
    for (const w of appWorkloads) {
      expect(w.template.spec?.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
      expect(w.template.spec?.automountServiceAccountToken).toBe(false);
      for (const c of containersOf(w)) {
        expect(c.securityContext).toMatchObject({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ["ALL"] },
        });
      }
    }
  });

  it("pins every image other than the app's to an exact version with its digest beside it", () => {
    const images = workloads
      .flatMap(w => containersOf(w).map(c => c.image ?? ""))
      .filter(i => !isAppContainer({ name: "", image: i }));
    expect(images.length).toBeGreaterThan(0);
    for (const image of images) {
      const [tagged, digest] = image.split("@");
      // The digest fixes the bytes; the exact tag beside it says to a reader what they are.
      expect({ image, digest: /^sha256:[a-f0-9]{64}$/.test(digest ?? "") }).toEqual({ image, digest: true });
      expect({ image, pinned: isPinnedImage(tagged) }).toEqual({ image, pinned: true });
    }
  });

  it("pins the app image in the kustomization to an exact release tag or a digest, never a floating tag", () => {
    const entries = baseKustomization.images ?? [];
    expect(entries.map(i => i.name)).toEqual([APP_IMAGE]);
    const [entry] = entries;
    const exactTag = /^v?\d+\.\d+\.\d+(-[\w.]+)?$/.test(entry.newTag ?? "");
    const digest = /^sha256:[a-f0-9]{64}$/.test(entry.digest ?? "");
    expect({ newTag: entry.newTag, digest: entry.digest, pinned: exactTag || digest }).toMatchObject({
      pinned: true,
    });
    for (const { c } of appContainers) expect(c.image).toBe(APP_IMAGE);
  });
  describe("fail closed: ingest authentication", () => {
    it("reads every Secret key of the app as required (optional: false), so a missing key stops the pod", () => {
      const refs = appContainers.flatMap(({ w, c }) =>
        (c.env ?? [])
          .filter(e => e.valueFrom?.secretKeyRef)
          .map(e => ({ workload: w.name, name: e.name, optional: e.valueFrom!.secretKeyRef!.optional })),
      );
      expect(refs.filter(r => r.name === "INGEST_TOKEN").map(r => r.workload)).toEqual(["gateway"]);
      for (const r of refs) expect(r).toEqual({ ...r, optional: false });
    });

    const gateway = () => containersOf(deployment("gateway")).find(isAppContainer)!;
    /** The Secret template with INGEST_TOKEN set to `token` (undefined: the key is missing). */
    const secretWithToken = (token: string | undefined): ISecret => {
      const stringData = { ...(secretTemplate?.object.stringData ?? {}) };
      if (token === undefined) delete stringData.INGEST_TOKEN;
      else stringData.INGEST_TOKEN = token;
      return { ...secretTemplate!.object, stringData };
    };
    /** The component's patch of the gateway Deployment, and the gateway container it makes. */
    const component = () => {
      const k = kustomizations.get("k8s/components/ingest-auth-off");
      const [patch] = k?.patches ?? [];
      const patched = readYamlDocuments(writeTemp(patch?.patch ?? ""))[0]?.value as IDeployment | undefined;
      const containers = patched?.spec?.template.spec?.containers ?? [];
      return { kustomization: k, patch, containers, gateway: mergeEnv(gateway(), containers[0]?.env ?? []) };
    };

    it("requires ingest authentication in the base: INGEST_AUTH=required, and the gateway gets its token", () => {
      for (const secret of [secretTemplate, ...devSecrets]) {
        const config = configOf(gateway(), secret?.object);
        expect({
          secret: secret?.file,
          auth: config.ingest.auth,
          token: Boolean(config.ingest.token),
        }).toEqual({
          secret: secret?.file,
          auth: "required",
          token: true,
        });
      }
    });

    it.each([
      ["missing", undefined],
      ["empty", ""],
    ])(
      "stops a gateway whose Secret has the INGEST_TOKEN %s (the app refuses it, naming both variables)",
      (_, token) => {
        expect(() => configOf(gateway(), secretWithToken(token))).toThrow(
          /INGEST_TOKEN: must be set \(not empty\) when INGEST_AUTH=required/,
        );
      },
    );

    it("needs no token on the actors pods, which run no gateway", () => {
      const actors = containersOf(deployment("actors")).find(isAppContainer)!;
      expect(configOf(actors, secretWithToken(undefined)).ingest).toMatchObject({
        auth: "required",
        token: undefined,
      });
    });

    it("offers unauthenticated ingest only as the explicit component ingest-auth-off, outside the base", () => {
      const { kustomization, patch, containers } = component();
      expect(kustomization?.kind).toBe("Component");
      expect(kustomization?.patches).toHaveLength(1);
      expect(patch.target).toMatchObject({ kind: "Deployment", name: "gateway" });
      expect(containers.map(c => c.name)).toEqual(containersOf(deployment("gateway")).map(c => c.name));
      expect(containers[0].env).toEqual([
        { name: "INGEST_AUTH", value: "off" },
        { name: "INGEST_TOKEN", $patch: "delete" },
      ]);
      for (const k of kustomizations.values())
        expect(k.components ?? []).not.toContain(expect.stringContaining("ingest-auth-off"));
    });

    it("lets a gateway with the component start without the Secret key, with INGEST_AUTH=off", () => {
      const patched = component().gateway;
      expect((patched.env ?? []).map(e => e.name)).not.toContain("INGEST_TOKEN");
      const config = configOf(patched, secretWithToken(undefined));
      expect(config.ingest).toMatchObject({ auth: "off", token: undefined });
    });

    it("writes every env value and ConfigMap value as a string for kubectl's YAML 1.1 too (off, no, yes are booleans there)", () => {
      const problems: string[] = [];
      const check = (where: string, value: unknown) => {
        if (value !== undefined && typeof value !== "string")
          problems.push(`${where}: ${JSON.stringify(value)}`);
      };
      const texts = yamlFiles.map(f => ({ file: rel(f), text: fs.readFileSync(f, "utf8") }));
      for (const k of kustomizationFiles)
        for (const p of (readYamlDocuments(k)[0].value as Kustomization).patches ?? [])
          if (p.patch) texts.push({ file: `${rel(k)} patch`, text: p.patch });
      for (const { file, text } of texts) {
        for (const doc of parseAllDocuments(text, { version: "1.1" })) {
          const o = doc.toJS() as Manifest["object"] | null;
          if (!isRecord(o)) continue;
          if (o.kind === "ConfigMap")
            for (const [k, v] of Object.entries((o.data ?? {}) as Record<string, unknown>))
              check(`${file} ConfigMap data ${k}`, v);
          const spec = (o as { spec?: { template?: IPodTemplateSpec } }).spec?.template?.spec;
          for (const c of [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])])
            for (const e of c.env ?? [])
              check(`${file} ${c.name} env ${e.name}`, (e as { value?: unknown }).value);
        }
      }
      expect(problems).toEqual([]);
    });
  });

  describe("cluster conventions", () => {
    it("labels the namespace for Pod Security `restricted` (enforce, audit, warn)", () => {
      const ns = ofKind<{ metadata: Meta }>("Namespace").map(n => n.object.metadata.labels ?? {});
      expect(ns).toHaveLength(1);
      expect(ns[0]).toMatchObject({
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
      });
    });

    it("runs every pod of the namespace (app and dev dependencies) within Pod Security `restricted`", () => {
      expect(workloads.length).toBeGreaterThan(2);
      expect(workloads.flatMap(restrictedViolations)).toEqual([]);
    });

    it("sizes V8's heap (NODE_OPTIONS --max-old-space-size) at 60..80 % of each app container's memory limit", () => {
      for (const { w, c } of appContainers) {
        const options = c.env?.find(e => e.name === "NODE_OPTIONS")?.value ?? "";
        const mb = Number(/--max-old-space-size=(\d+)/.exec(options)?.[1]);
        const limitMb = quantityBytes(c.resources?.limits?.memory) / 2 ** 20;
        const share = mb / limitMb;
        expect({ workload: w.name, options, fits: share >= 0.6 && share <= 0.8 }).toEqual({
          workload: w.name,
          options,
          fits: true,
        });
      }
    });

    it("spreads the app's pods over zones and over nodes", () => {
      for (const w of appWorkloads) {
        const spread = (podSpecOf(w).topologySpreadConstraints ?? []).filter(t =>
          labelsMatch(t.labelSelector?.matchLabels ?? {}, w.template.metadata?.labels),
        );
        expect({ workload: w.name, keys: spread.map(t => t.topologyKey).sort() }).toEqual({
          workload: w.name,
          keys: ["kubernetes.io/hostname", "topology.kubernetes.io/zone"],
        });
      }
    });

    it("gives the gateway a preStop sleep, so endpoint removal reaches the load balancers before SIGTERM", () => {
      const c = containersOf(deployment("gateway")).find(isAppContainer)!;
      const command = c.lifecycle?.preStop?.exec?.command ?? [];
      expect(command[0]).toBe("sleep");
      expect(Number(command[1])).toBeGreaterThanOrEqual(3);
    });

    it("serves the gateway Service on PORT, to the gateway's http container port", () => {
      const svc = ofKind<IService>("Service").find(s => s.object.metadata?.name === "gateway")!.object;
      const c = containersOf(deployment("gateway")).find(isAppContainer)!;
      const port = configOf(c).port;
      expect(svc.spec?.ports?.map(p => [p.name, p.port, portNumber(c, p.targetPort)])).toEqual([
        ["http", port, port],
      ]);
    });

    it("keeps the Prometheus Operator objects out of the base: k8s/monitoring applies them on its own", () => {
      const base = baseKustomization.resources ?? [];
      expect(base.some(r => r.includes("monitoring"))).toBe(false);
      expect(kustomizations.get("k8s/monitoring")?.resources?.sort()).toEqual([
        "prometheusrule.yaml",
        "servicemonitor.yaml",
      ]);
    });

    it("scrapes with the ServiceMonitor the metrics port and path of the stock-metrics Service", () => {
      const monitors = ofKind<{
        spec: {
          selector: { matchLabels: Record<string, string> };
          endpoints: { port: string; path?: string }[];
        };
      }>("ServiceMonitor");
      expect(monitors).toHaveLength(1);
      const { spec } = monitors[0].object;
      const services = ofKind<IService>("Service").filter(s =>
        labelsMatch(spec.selector.matchLabels, s.object.metadata?.labels),
      );
      expect(services.map(s => s.object.metadata?.name)).toEqual(["stock-metrics"]);
      const portNames = services[0].object.spec?.ports?.map(p => p.name);
      for (const e of spec.endpoints) {
        expect(portNames).toContain(e.port);
        expect(e.path ?? "/metrics").toBe(metricsEndpoint(DEFAULTS).path);
      }
    });
  });

  describe("network policies", () => {
    it("deny all ingress and egress of the namespace by default", () => {
      const denyAll = networkPolicies.filter(
        ({ object: p }) =>
          Object.keys(p.spec?.podSelector ?? {}).every(k => k === "matchLabels") &&
          Object.keys(p.spec?.podSelector?.matchLabels ?? {}).length === 0 &&
          [...(p.spec?.policyTypes ?? [])].sort().join() === "Egress,Ingress" &&
          !p.spec?.ingress?.length &&
          !p.spec?.egress?.length,
      );
      expect(denyAll.map(p => p.file)).toEqual(["k8s/network-policy.yaml"]);
    });

    it("let every app pod resolve names and reach Kafka, NATS, Postgres and Redis on their configured ports", () => {
      const problems: string[] = [];
      for (const { w, c } of appContainers) {
        const labels = w.template.metadata?.labels;
        if (!allows(labels, "Egress", 53, "UDP")) problems.push(`${w.name}: DNS (UDP 53)`);
        for (const d of dependenciesOf(configOf(c)))
          if (!allows(labels, "Egress", d.port)) problems.push(`${w.name}: ${d.what} on ${d.port}`);
      }
      expect(problems).toEqual([]);
    });

    it("admit HTTP to the gateway from anywhere and metrics scrapes from the monitoring namespace only", () => {
      const fromMonitoring = (peers: unknown) =>
        Array.isArray(peers) &&
        peers.length > 0 &&
        peers.every(
          p =>
            (p as { namespaceSelector?: { matchLabels?: Record<string, string> } }).namespaceSelector
              ?.matchLabels?.["kubernetes.io/metadata.name"] === "monitoring",
        );
      const problems: string[] = [];
      for (const { w, c } of appContainers) {
        const labels = w.template.metadata?.labels;
        const config = configOf(c);
        if (!allows(labels, "Ingress", config.metricsPort, "TCP", fromMonitoring))
          problems.push(`${w.name}: metrics ${config.metricsPort} from monitoring`);
        if (config.services.includes("gateway") && !allows(labels, "Ingress", config.port))
          problems.push(`${w.name}: http ${config.port}`);
        if (!config.services.includes("gateway") && allows(labels, "Ingress", config.port))
          problems.push(`${w.name}: admits ${config.port} but runs no gateway`);
      }
      expect(problems).toEqual([]);
    });

    it("let the dev dependencies accept the app pods on their Services' ports", () => {
      const appLabels = deployment("actors").template.metadata?.labels;
      const fromApp = (peers: unknown) =>
        Array.isArray(peers) &&
        peers.some(p =>
          labelsMatch(
            (p as { podSelector?: { matchLabels?: Record<string, string> } }).podSelector?.matchLabels ?? {},
            appLabels,
          ),
        );
      const problems: string[] = [];
      for (const { object: svc } of ofKind<IService>("Service").filter(s => s.file.startsWith("k8s/dev/"))) {
        const pods = workloads.find(w => labelsMatch(svc.spec?.selector ?? {}, w.template.metadata?.labels));
        for (const port of svc.spec?.ports ?? []) {
          const target =
            pods &&
            containersOf(pods)
              .map(c => portNumber(c, port.targetPort ?? port.port))
              .find(Boolean);
          if (!target || !allows(pods.template.metadata?.labels, "Ingress", target, "TCP", fromApp))
            problems.push(`${svc.metadata?.name}:${port.port}`);
        }
      }
      expect(problems).toEqual([]);
    });
  });

  describe("the dev dependencies (k8s/dev)", () => {
    const devServices = ofKind<IService>("Service").filter(s => s.file.startsWith("k8s/dev/"));

    it("answer at every host and port the app's configuration names (ConfigMap and dev Secret)", () => {
      const problems: string[] = [];
      for (const { w, c } of appContainers) {
        for (const secret of devSecrets) {
          for (const d of dependenciesOf(configOf(c, secret.object))) {
            const svc = devServices.find(s => s.object.metadata?.name === d.host)?.object;
            if (!svc) problems.push(`${w.name}: ${d.what} host ${d.host} is no Service of k8s/dev`);
            else if (!svc.spec?.ports?.some(p => p.port === d.port))
              problems.push(`${w.name}: ${d.what} port ${d.port} is not a port of Service ${d.host}`);
          }
        }
      }
      expect(problems).toEqual([]);
    });

    it("give the dev Secret's DATABASE_URL the user, password and database of the dev Postgres", () => {
      const postgres = workloads.find(w => w.name === "postgres" && w.file.startsWith("k8s/dev/"))!;
      const c = containersOf(postgres)[0];
      const env = (name: string) => {
        const e = c.env?.find(x => x.name === name);
        if (e?.value !== undefined) return e.value;
        const ref = e?.valueFrom?.secretKeyRef;
        const secret = ofKind<ISecret>("Secret").find(s => s.object.metadata?.name === ref?.name)?.object;
        return ref ? secret?.stringData?.[ref.key] : undefined;
      };
      expect(devSecrets).toHaveLength(1);
      const url = new URL(devSecrets[0].object.stringData?.DATABASE_URL ?? "");
      expect({
        user: decodeURIComponent(url.username),
        password: decodeURIComponent(url.password),
        database: url.pathname.slice(1),
      }).toEqual({
        user: env("POSTGRES_USER"),
        password: env("POSTGRES_PASSWORD"),
        database: env("POSTGRES_DB"),
      });
    });

    it("run Redis with AOF persistence and noeviction, its maxmemory under the container's memory limit", () => {
      const redis = workloads.find(w => w.name === "redis" && w.file.startsWith("k8s/dev/"))!;
      const c = containersOf(redis)[0];
      const args = [...(c.command ?? []), ...(c.args ?? [])];
      const maxmemory = redisBytes(argAfter(args, "--maxmemory"));
      const limit = quantityBytes(c.resources?.limits?.memory);
      expect({
        appendonly: argAfter(args, "--appendonly"),
        policy: argAfter(args, "--maxmemory-policy"),
        underLimit: maxmemory > 0 && maxmemory <= 0.8 * limit,
      }).toEqual({ appendonly: "yes", policy: "noeviction", underLimit: true });
    });
  });

  describe("kustomize builds (kubectl kustomize)", () => {
    const kubectl = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"].find(f => fs.existsSync(f));
    const build = (dir: string) =>
      parseAllDocuments(execFileSync(kubectl!, ["kustomize", dir], { encoding: "utf8" })).map(
        d => d.toJS() as Manifest["object"],
      );
    const run = kubectl ? it : it.skip;
    if (!kubectl) console.warn("kubectl missing: the kustomize builds of k8s/ are not checked");

    run("build k8s/, k8s/dev/ and k8s/monitoring/ into objects that pass the schema", () => {
      for (const dir of ["k8s", "k8s/dev", "k8s/monitoring"]) {
        const objects = build(path.join(ROOT, dir));
        expect(objects.length).toBeGreaterThan(0);
        const problems = objects.flatMap(o => [...schemaErrors(o), ...unknownFields(o)]);
        expect({ dir, problems }).toEqual({ dir, problems: [] });
      }
    });

    run(
      "build an overlay with ingest-auth-off whose gateway has INGEST_AUTH=off and reads no INGEST_TOKEN, and nothing else changed",
      () => {
        const overlay = fs.mkdtempSync(path.join(os.tmpdir(), "stock-overlay-"));
        try {
          const k8s = path.relative(overlay, path.join(ROOT, "k8s"));
          fs.writeFileSync(
            path.join(overlay, "kustomization.yaml"),
            `resources: [${k8s}]\ncomponents: [${k8s}/components/ingest-auth-off]\n`,
          );
          const base = build(path.join(ROOT, "k8s"));
          const patched = build(overlay);
          const envOf = (objects: Manifest["object"][]) =>
            (
              objects.find(
                o => o.kind === "Deployment" && o.metadata?.name === "gateway",
              ) as unknown as IDeployment
            ).spec!.template.spec!.containers[0].env!;
          const names = (objects: Manifest["object"][]) => envOf(objects).map(e => e.name);
          expect(names(base)).toContain("INGEST_TOKEN");
          expect(names(base)).not.toContain("INGEST_AUTH");
          expect(names(patched).sort()).toEqual(
            [...names(base).filter(n => n !== "INGEST_TOKEN"), "INGEST_AUTH"].sort(),
          );
          expect(envOf(patched).find(e => e.name === "INGEST_AUTH")?.value).toBe("off");
          expect(patched.length).toBe(base.length);
        } finally {
          fs.rmSync(overlay, { recursive: true, force: true });
        }
      },
    );
  });
});
