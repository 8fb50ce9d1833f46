import fs from "node:fs";
import path from "node:path";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { isRecord } from "./repo-files";

/**
 * Offline schema validation of Kubernetes objects with kubernetes-models, whose validators are
 * compiled from the Kubernetes OpenAPI schema. The schema allows unknown fields (the API server
 * decides), so `unknownFields` adds kubectl's strict field validation: it walks the object along
 * the interfaces of the package's type declarations, which are generated from the same schema.
 */

type ModelClass = new (data: never) => { validate(): void };

interface KindEntry {
  model: ModelClass;
  /** The model's module inside kubernetes-models, whose .d.ts declares the object's fields. */
  module: string;
}

const KINDS: Record<string, KindEntry> = {
  "v1/Namespace": { model: Namespace, module: "v1/Namespace" },
  "v1/ConfigMap": { model: ConfigMap, module: "v1/ConfigMap" },
  "v1/Secret": { model: Secret, module: "v1/Secret" },
  "v1/Service": { model: Service, module: "v1/Service" },
  "apps/v1/Deployment": { model: Deployment, module: "apps/v1/Deployment" },
  "apps/v1/StatefulSet": { model: StatefulSet, module: "apps/v1/StatefulSet" },
  "autoscaling/v2/HorizontalPodAutoscaler": {
    model: HorizontalPodAutoscaler,
    module: "autoscaling/v2/HorizontalPodAutoscaler",
  },
  "policy/v1/PodDisruptionBudget": { model: PodDisruptionBudget, module: "policy/v1/PodDisruptionBudget" },
  "networking.k8s.io/v1/NetworkPolicy": {
    model: NetworkPolicy,
    module: "networking.k8s.io/v1/NetworkPolicy",
  },
};

/**
 * The Prometheus Operator's kinds, which kubernetes-models does not ship: their fields, as far as
 * k8s/monitoring uses them, from the operator's CRDs (monitoring.coreos.com/v1). A field's value
 * is the shape of its object (or of each element of its array), or a type for a scalar.
 */
type Field = "string" | "number" | "boolean" | "map" | "any" | { [field: string]: Field };
type CrdShape = { required: string[]; fields: { [field: string]: Field } };

const METADATA: Field = { name: "string", namespace: "string", labels: "map", annotations: "map" };
const LABEL_SELECTOR: Field = { matchLabels: "map", matchExpressions: "any" };
const CRDS: Record<string, CrdShape> = {
  "monitoring.coreos.com/v1/ServiceMonitor": {
    required: ["spec.selector", "spec.endpoints"],
    fields: {
      apiVersion: "string",
      kind: "string",
      metadata: METADATA,
      spec: {
        jobLabel: "string",
        selector: LABEL_SELECTOR,
        namespaceSelector: { any: "boolean", matchNames: "string" },
        endpoints: {
          port: "string",
          targetPort: "any",
          path: "string",
          scheme: "string",
          interval: "string",
          scrapeTimeout: "string",
          honorLabels: "boolean",
          relabelings: "any",
          metricRelabelings: "any",
        },
      },
    },
  },
  "monitoring.coreos.com/v1/PrometheusRule": {
    required: ["spec.groups"],
    fields: {
      apiVersion: "string",
      kind: "string",
      metadata: METADATA,
      spec: {
        groups: {
          name: "string",
          interval: "string",
          rules: {
            alert: "string",
            record: "string",
            expr: "string",
            for: "string",
            keep_firing_for: "string",
            labels: "map",
            annotations: "map",
          },
        },
      },
    },
  },
};

export const SUPPORTED_KINDS = [...Object.keys(KINDS), ...Object.keys(CRDS)];

/** Problems of an object against a hand-written CRD shape: unknown fields, wrong types, missing ones. */
function crdProblems(value: unknown, shape: Field, at: string): string[] {
  if (shape === "any") return [];
  if (Array.isArray(value)) return value.flatMap((v, i) => crdProblems(v, shape, `${at}[${i}]`));
  if (typeof shape === "string") {
    if (shape === "map") {
      if (!isRecord(value)) return [`${at} must be a map`];
      return Object.entries(value)
        .filter(([, v]) => typeof v !== "string")
        .map(([k]) => `${at}.${k} must be string`);
    }
    return typeof value === shape ? [] : [`${at} must be ${shape}`];
  }
  if (!isRecord(value)) return [`${at} must be an object`];
  return Object.entries(value).flatMap(([k, v]) =>
    k in shape ? crdProblems(v, shape[k], `${at}.${k}`) : [`${at}.${k} is not a field of the CRD`],
  );
}

function crdErrors(object: Record<string, unknown>, crd: CrdShape): string[] {
  const missing = crd.required.filter(
    p => p.split(".").reduce<unknown>((v, k) => (isRecord(v) ? v[k] : undefined), object) === undefined,
  );
  return [...missing.map(p => `${p} is required`), ...crdProblems(object, crd.fields, String(object.kind))];
}

/** Schema errors of one object; an apiVersion/kind this file does not know is an error too. */
export function schemaErrors(object: Record<string, unknown>): string[] {
  const key = `${String(object.apiVersion)}/${String(object.kind)}`;
  const entry = KINDS[key];
  if (CRDS[key]) return crdErrors(object, CRDS[key]);
  if (!entry) return [`${key} is not a kind these tests validate (known: ${SUPPORTED_KINDS.join(", ")})`];
  try {
    new entry.model(object as never).validate();
    return [];
  } catch (err) {
    return [(err as Error).message];
  }
}

/** Paths of fields the Kubernetes schema does not declare (typos such as `readinesProbe`). */
export function unknownFields(object: Record<string, unknown>): string[] {
  const entry = KINDS[`${String(object.apiVersion)}/${String(object.kind)}`];
  if (!entry) return [];
  const packageDir = path.dirname(require.resolve("kubernetes-models"));
  return walk(object, path.join(packageDir, `${entry.module}.d.ts`), String(object.kind));
}

/** Field name -> declaration file of the field's object type, or null where the type is opaque. */
type Shape = Map<string, string | null>;
const shapes = new Map<string, Shape>();

function shapeOf(dtsFile: string): Shape {
  const cached = shapes.get(dtsFile);
  if (cached) return cached;
  const text = fs.readFileSync(dtsFile, "utf8");
  const imports = new Map<string, string>();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) {
    imports.set(m[1], resolveDeclaration(m[2], path.dirname(dtsFile)));
  }
  const shape: Shape = new Map();
  shapes.set(dtsFile, shape);
  // A declaration without an interface (IntOrString, Quantity, ...) is a scalar: no fields.
  const start = text.search(/^export interface \w+(?: extends [\w, ]+)? \{$/m);
  if (start < 0) return shape;
  const body = text.slice(start, text.indexOf("\n}", start));
  // Fields of the interface itself sit at four spaces; deeper lines belong to inline types.
  for (const m of body.matchAll(/^ {4}"([^"]+)"\??: (.+)$/gm)) {
    const type = /^(?:Array<)?(\w+)>?;$/.exec(m[2]);
    shape.set(m[1], type && imports.has(type[1]) ? imports.get(type[1])! : null);
  }
  return shape;
}

function resolveDeclaration(specifier: string, fromDir: string): string {
  if (specifier.startsWith(".")) return path.resolve(fromDir, `${specifier}.d.ts`);
  // "@scope/package/sub/path": the package's folder as Node finds it from here, then the path.
  const parts = specifier.split("/");
  const packageName = parts.slice(0, specifier.startsWith("@") ? 2 : 1).join("/");
  const packageDir = path.dirname(require.resolve(`${packageName}/package.json`, { paths: [fromDir] }));
  return path.join(packageDir, ...parts.slice(packageName.split("/").length)) + ".d.ts";
}

function walk(value: unknown, dtsFile: string, at: string): string[] {
  if (!isRecord(value)) return [];
  const shape = shapeOf(dtsFile);
  if (shape.size === 0) return [];
  const problems: string[] = [];
  for (const [key, child] of Object.entries(value)) {
    if (!shape.has(key)) {
      problems.push(`${at}.${key}`);
      continue;
    }
    const childFile = shape.get(key);
    if (!childFile) continue;
    if (Array.isArray(child))
      child.forEach((c, i) => problems.push(...walk(c, childFile, `${at}.${key}[${i}]`)));
    else problems.push(...walk(child, childFile, `${at}.${key}`));
  }
  return problems;
}
