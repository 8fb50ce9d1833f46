import fs from "node:fs";
import path from "node:path";
import Ajv, { type ErrorObject, type ValidateFunction } from "ajv";
import draft07 from "ajv/dist/refs/json-schema-draft-07.json";

/**
 * Offline validation against the Compose Specification's JSON Schema (schemas/compose-spec.json,
 * vendored; see schemas/README.md), with ajv. The schema names its meta-schema by the https form
 * of draft-07's URI, which ajv only knows by the http form: it is registered under both, so the
 * vendored schema is itself checked against draft-07 when it is compiled.
 */

export const COMPOSE_SCHEMA_FILE = path.join(__dirname, "schemas", "compose-spec.json");

let validator: ValidateFunction | undefined;

function compile(): ValidateFunction {
  // strictTypes is off because the upstream schema leaves `type` implicit beside keywords such as
  // additionalProperties; strict mode otherwise stays on: an unknown keyword or format fails.
  const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false, allowUnionTypes: true });
  ajv.addMetaSchema({ ...draft07, $id: "https://json-schema.org/draft-07/schema" });
  return ajv.compile(JSON.parse(fs.readFileSync(COMPOSE_SCHEMA_FILE, "utf8")) as object);
}

/** Schema errors of a Compose model (after interpolation, as Compose validates it), one line each. */
export function composeSchemaErrors(model: unknown): string[] {
  validator ??= compile();
  if (validator(model)) return [];
  return (validator.errors ?? []).map(formatError);
}

function formatError(e: ErrorObject): string {
  const at = e.instancePath || "/";
  const params = e.params as Record<string, unknown>;
  if (e.keyword === "additionalProperties")
    return `${at}: unknown property "${String(params.additionalProperty)}"`;
  if (e.keyword === "enum") return `${at}: ${e.message} ${JSON.stringify(params.allowedValues)}`;
  return `${at}: ${e.message}`;
}
