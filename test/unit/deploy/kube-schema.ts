import fs from "node:fs";
import path from "node:path";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
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
};

export const SUPPORTED_KINDS = Object.keys(KINDS);

/** Schema errors of one object; an apiVersion/kind this file does not know is an error too. */
export function schemaErrors(object: Record<string, unknown>): string[] {
  const key = `${String(object.apiVersion)}/${String(object.kind)}`;
  const entry = KINDS[key];
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
