import fs from "node:fs";
import path from "node:path";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IStatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import type { IHorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import type { IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { IPodTemplateSpec } from "kubernetes-models/v1/PodTemplateSpec";
import type { IProbe } from "kubernetes-models/v1/Probe";
import type { ISecret } from "kubernetes-models/v1/Secret";
import type { IService } from "kubernetes-models/v1/Service";
import { Resources } from "../../../adapters/resources";
import { ALL_SERVICES, CONFIG_VARIABLES, loadConfig, type Config } from "../../../lib/config";
import { METRIC } from "../../../lib/metrics";
import createGatewayService from "../../../services/gateway.service";
import { schemaErrors, unknownFields } from "./kube-schema";
import { exportedSeries, metricsEndpoint } from "./metric-series";
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
  namespace?: string;
  resources?: string[];
  images?: { name: string; newName?: string; newTag?: string }[];
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

function portNumber(c: IContainer, port: number | string | undefined): number | undefined {
  if (typeof port === "number") return port;
  return c.ports?.find(p => p.name === port)?.containerPort;
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

describe("Kubernetes manifests (k8s/)", () => {
  it("parses every YAML document and each names its apiVersion, kind and metadata.name", () => {
    expect(manifests.length).toBeGreaterThan(0);
    const problems = manifests
      .filter(m => !isRecord(m.object) || !m.object.apiVersion || !m.object.kind || !m.object.metadata?.name)
      .map(m => `${m.file}#${m.index}`);
    expect(problems).toEqual([]);
    for (const k of kustomizations.values()) expect(k).toMatchObject({ resources: expect.any(Array) });
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
          if (!CONFIG_VARIABLES.includes(e.name)) problems.push(`${w.name}: env ${e.name}`);
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
            if (probe.httpGet.path !== reporter.path)
              problems.push(`${where}: the reporter serves ${reporter.path}`);
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

    it("call actors ready once the node holds a partition assignment, read from its own /metrics", () => {
      const c = containersOf(deployment("actors")).find(isAppContainer)!;
      const script = (c.readinessProbe?.exec?.command ?? []).join(" ");
      const series = exportedSeries();
      const wanted = METRIC.ownedPartitions.replace(/\./g, "_");
      const named = [...new Set(script.match(/\bstock_\w+/g) ?? [])];
      expect(named).toEqual([wanted]);
      expect(series.has(wanted)).toBe(true);
      expect(script).toContain(metricsEndpoint(configOf(c)).path);
      expect(script).toContain("process.env.METRICS_PORT");
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

  it("lets a PodDisruptionBudget evict at most one actors pod at a time", () => {
    const actors = deployment("actors");
    const pdbs = ofKind<IPodDisruptionBudget>("PodDisruptionBudget").filter(({ object }) =>
      labelsMatch(object.spec?.selector?.matchLabels ?? {}, actors.template.metadata?.labels),
    );
    expect(pdbs.map(p => p.object.spec?.maxUnavailable)).toEqual([1]);
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
    expect(hpa.spec?.minReplicas).toBe(gateway.replicas);
    for (const c of containersOf(gateway)) expect(c.resources?.requests?.cpu).toBeDefined();
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

  it("pins every image other than the app's to a version", () => {
    const images = workloads
      .flatMap(w => containersOf(w).map(c => c.image ?? ""))
      .filter(i => !i.startsWith(APP_IMAGE));
    expect(images.length).toBeGreaterThan(0);
    for (const image of images) expect(image).toMatch(/^[\w./-]+:\d[\w.-]*$/);
  });
});
