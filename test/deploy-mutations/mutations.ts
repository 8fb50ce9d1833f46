/**
 * Realistic one-line mistakes in the deployment files, each of which the deploy tests
 * (test/unit/deploy) must catch. `from` must occur exactly once in `file`, so that the mistake is
 * the one intended; `edit` is for mistakes that are no plain substitution (a deleted document).
 */

export interface Mutation {
  id: string;
  file: string;
  from?: string;
  to?: string;
  edit?: (text: string) => string;
}

/** Removes the YAML document of `kind` named `name` from a multi-document file. */
const deleteDocument = (kind: string, name: string) => (text: string) => {
  const docs = text.split(/\n---\n/);
  const kept = docs.filter(d => !(d.includes(`\nkind: ${kind}\n`) && d.includes(`\n  name: ${name}\n`)));
  if (kept.length !== docs.length - 1) throw new Error(`no single ${kind}/${name} document`);
  return kept.join("\n---\n");
};

/** Removes the lines from the one starting with `first` through the one containing `last`. */
const deleteLines = (first: string, last: string) => (text: string) => {
  const lines = text.split("\n");
  const start = lines.findIndex(l => l.startsWith(first));
  const end = lines.findIndex((l, i) => i >= start && l.includes(last));
  if (start < 0 || end < 0 || lines.filter(l => l.startsWith(first)).length !== 1)
    throw new Error(`no single block ${first} .. ${last}`);
  return [...lines.slice(0, start), ...lines.slice(end + 1)].join("\n");
};

export const MUTATIONS: Mutation[] = [
  // Cross-references between the app's configuration and its dependencies.
  {
    id: "Kafka host misspelt (kafak:9092)",
    file: "k8s/configmap.yaml",
    from: "KAFKA_BROKERS: kafka:9092",
    to: "KAFKA_BROKERS: kafak:9092",
  },
  {
    id: "NATS on port 4223",
    file: "k8s/configmap.yaml",
    from: "NATS_URL: nats://nats:4222",
    to: "NATS_URL: nats://nats:4223",
  },
  {
    id: "dev database password differs from the dev Postgres'",
    file: "k8s/dev/secret.yaml",
    from: "stocks:dev-only-password@postgres",
    to: "stocks:dev-only-passw0rd@postgres",
  },
  {
    id: "dev Kafka Service on another port",
    file: "k8s/dev/kafka.yaml",
    from: "      port: 9092\n      targetPort: client",
    to: "      port: 9093\n      targetPort: client",
  },
  {
    id: "gateway Service port 5001",
    file: "k8s/gateway.yaml",
    from: "      port: 5000\n      targetPort: http",
    to: "      port: 5001\n      targetPort: http",
  },
  {
    id: "metrics Service targets an undeclared numeric port",
    file: "k8s/metrics-service.yaml",
    from: "targetPort: metrics",
    to: "targetPort: 3031",
  },
  // Availability.
  {
    id: "gateway PDB deleted",
    file: "k8s/gateway.yaml",
    edit: deleteDocument("PodDisruptionBudget", "gateway"),
  },
  {
    id: "actors PDB deleted",
    file: "k8s/actors.yaml",
    edit: deleteDocument("PodDisruptionBudget", "actors"),
  },
  {
    id: "gateway PDB without unhealthyPodEvictionPolicy",
    file: "k8s/gateway.yaml",
    from: "  unhealthyPodEvictionPolicy: AlwaysAllow\n",
    to: "",
  },
  {
    id: "gateway preStop deleted",
    file: "k8s/gateway.yaml",
    edit: deleteLines("          lifecycle:", '"sleep"'),
  },
  {
    id: "replicas back on the HPA-scaled gateway",
    file: "k8s/gateway.yaml",
    from: "  revisionHistoryLimit: 5\n",
    to: "  replicas: 2\n  revisionHistoryLimit: 5\n",
  },
  {
    id: "actors grace period shorter than SHUTDOWN_GRACE_MS",
    file: "k8s/actors.yaml",
    from: "terminationGracePeriodSeconds: 45",
    to: "terminationGracePeriodSeconds: 10",
  },
  {
    id: "zone spread of the actors replaced by a second hostname spread",
    file: "k8s/actors.yaml",
    from: "topologyKey: topology.kubernetes.io/zone",
    to: "topologyKey: kubernetes.io/hostname",
  },
  {
    id: "gateway heap above its memory limit",
    file: "k8s/gateway.yaml",
    from: "--max-old-space-size=384",
    to: "--max-old-space-size=1024",
  },
  // Probes and health checks.
  {
    id: "actors readiness probe asks /ready (a path nothing serves)",
    file: "k8s/actors.yaml",
    from: "              path: /readyz\n",
    to: "              path: /ready\n",
  },
  {
    id: "actors readiness probe back on /metrics (always 200: ready forever)",
    file: "k8s/actors.yaml",
    from: "              path: /readyz\n",
    to: "              path: /metrics\n",
  },
  {
    id: "actors readiness probe on the gateway port, which actors pods do not serve",
    file: "k8s/actors.yaml",
    from: "              path: /readyz\n              port: metrics",
    to: "              path: /readyz\n              port: 5000",
  },
  {
    id: "actors liveness probe asks /readyz (a Kafka outage would restart every pod)",
    file: "k8s/actors.yaml",
    from: "          livenessProbe:\n            httpGet:\n              path: /healthz",
    to: "          livenessProbe:\n            httpGet:\n              path: /readyz",
  },
  {
    id: "actors readiness takes 12 failures (a pod cut from Kafka stays ready for a minute)",
    file: "k8s/actors.yaml",
    from: "            timeoutSeconds: 3\n            failureThreshold: 2",
    to: "            timeoutSeconds: 3\n            failureThreshold: 12",
  },
  {
    id: "Dockerfile HEALTHCHECK reads e.PROT",
    file: "Dockerfile",
    from: "(e.PORT||'5000')",
    to: "(e.PROT||'5000')",
  },
  {
    id: "Dockerfile HEALTHCHECK asks /health",
    file: "Dockerfile",
    from: "/healthz'",
    to: "/health'",
  },
  // The Dockerfile's base image: pinned by digest, one Node major with package.json, one for all stages.
  {
    id: "Dockerfile base image without its digest",
    file: "Dockerfile",
    from: "ARG NODE_IMAGE=node:24-bookworm-slim@sha256:6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d",
    to: "ARG NODE_IMAGE=node:24-bookworm-slim",
  },
  {
    id: "Dockerfile base image on the latest tag",
    file: "Dockerfile",
    from: "ARG NODE_IMAGE=node:24-bookworm-slim@",
    to: "ARG NODE_IMAGE=node:latest@",
  },
  {
    id: "Dockerfile base image back on Node 20",
    file: "Dockerfile",
    from: "ARG NODE_IMAGE=node:24-bookworm-slim@",
    to: "ARG NODE_IMAGE=node:20-bookworm-slim@",
  },
  {
    id: "Dockerfile digest cut short",
    file: "Dockerfile",
    from: "6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d",
    to: "6f7b03f7c2c8",
  },
  {
    id: "Dockerfile runtime stage on a tag of its own",
    file: "Dockerfile",
    from: "FROM ${NODE_IMAGE} AS runtime",
    to: "FROM node:24-bookworm-slim AS runtime",
  },
  {
    id: "Dockerfile build stage on another digest",
    file: "Dockerfile",
    from: "FROM ${NODE_IMAGE} AS build",
    to: "FROM node:24-bookworm-slim@sha256:0000000000000000000000000000000000000000000000000000000000000000 AS build",
  },
  // Security.
  {
    id: "INGEST_TOKEN optional again (fails open)",
    file: "k8s/gateway.yaml",
    from: "                  optional: false\n            # V8",
    to: "                  optional: true\n            # V8",
  },
  {
    id: "INGEST_AUTH off in the base ConfigMap (ingest open by default)",
    file: "k8s/configmap.yaml",
    from: "INGEST_AUTH: required",
    to: 'INGEST_AUTH: "off"',
  },
  {
    id: "INGEST_AUTH auto in the base (an empty token opens ingest again)",
    file: "k8s/configmap.yaml",
    from: "INGEST_AUTH: required",
    to: "INGEST_AUTH: auto",
  },
  {
    id: "ingest-auth-off component without its INGEST_AUTH=off (gateways refuse to start)",
    file: "k8s/components/ingest-auth-off/kustomization.yaml",
    from: '                  - name: INGEST_AUTH\n                    value: "off"\n',
    to: "",
  },
  {
    id: "ingest-auth-off component with a bare off (a boolean in kubectl's YAML 1.1)",
    file: "k8s/components/ingest-auth-off/kustomization.yaml",
    from: 'value: "off"',
    to: "value: off",
  },
  {
    id: "seccompProfile removed from the actors pods",
    file: "k8s/actors.yaml",
    from: "        seccompProfile:\n          type: RuntimeDefault\n",
    to: "",
  },
  {
    id: "dev Postgres runs as root",
    file: "k8s/dev/postgres.yaml",
    from: "        runAsUser: 999\n",
    to: "        runAsUser: 0\n",
  },
  {
    id: "namespace enforces Pod Security baseline only",
    file: "k8s/namespace.yaml",
    from: "pod-security.kubernetes.io/enforce: restricted",
    to: "pod-security.kubernetes.io/enforce: baseline",
  },
  {
    id: "NetworkPolicy: NATS egress removed",
    file: "k8s/network-policy.yaml",
    from: "        - protocol: TCP\n          port: 4222\n",
    to: "",
  },
  {
    id: "NetworkPolicy: DNS over UDP removed",
    file: "k8s/network-policy.yaml",
    from: "        - protocol: UDP\n          port: 53\n",
    to: "",
  },
  {
    id: "NetworkPolicy: metrics scrapes from a misspelt namespace",
    file: "k8s/network-policy.yaml",
    from: "kubernetes.io/metadata.name: monitoring",
    to: "kubernetes.io/metadata.name: monitorng",
  },
  {
    id: "NetworkPolicy: default deny covers ingress only",
    file: "k8s/network-policy.yaml",
    from: "  podSelector: {}\n  policyTypes: [Ingress, Egress]",
    to: "  podSelector: {}\n  policyTypes: [Ingress]",
  },
  {
    id: "dev NetworkPolicy: Redis not admitted",
    file: "k8s/dev/network-policy.yaml",
    from: "        - protocol: TCP\n          port: 6379\n",
    to: "",
  },
  // Images.
  { id: "app image tag latest", file: "k8s/kustomization.yaml", from: "newTag: 0.1.0", to: "newTag: latest" },
  {
    id: "dev NATS image on a floating minor tag",
    file: "k8s/dev/nats.yaml",
    from: "image: nats:2.14.5-alpine",
    to: "image: nats:2.14-alpine",
  },
  {
    id: "dev Kafka image without its digest",
    file: "k8s/dev/kafka.yaml",
    from: "image: apache/kafka:3.9.1@sha256:4ceccc577f03f51f6af8dbfda55194d0d892f4fa7913ffbded567ce3895622ed",
    to: "image: apache/kafka:3.9.1",
  },
  // Dev Redis.
  {
    id: "Redis AOF removed",
    file: "k8s/dev/redis.yaml",
    from: '            - --appendonly\n            - "yes"\n',
    to: "",
  },
  {
    id: "Redis evicts keys (allkeys-lru)",
    file: "k8s/dev/redis.yaml",
    from: "            - noeviction",
    to: "            - allkeys-lru",
  },
  { id: "Redis maxmemory above the memory limit", file: "k8s/dev/redis.yaml", from: "- 384mb", to: "- 1gb" },
  // Monitoring.
  {
    id: "ServiceMonitor names a port the Service lacks",
    file: "k8s/monitoring/servicemonitor.yaml",
    from: "    - port: metrics",
    to: "    - port: metric",
  },
  {
    id: "ServiceMonitor put into the default base",
    file: "k8s/kustomization.yaml",
    from: "  - network-policy.yaml\n",
    to: "  - network-policy.yaml\n  - monitoring/servicemonitor.yaml\n",
  },
  {
    id: "alert expression typo (stock_dead_letter_total)",
    file: "grafana/prometheus/alerts.yml",
    from: "sum(increase(stock_dead_letters_total[10m])) > 0",
    to: "sum(increase(stock_dead_letter_total[10m])) > 0",
  },
  {
    id: "alert condition inverted (up > 1)",
    file: "grafana/prometheus/alerts.yml",
    from: 'expr: up{job=~"stock-analytics|stock-metrics"} == 0',
    to: 'expr: up{job=~"stock-analytics|stock-metrics"} > 1',
  },
  {
    id: "PrometheusRule drifts from alerts.yml",
    file: "k8s/monitoring/prometheusrule.yaml",
    from: "for: 10m",
    to: "for: 1m",
  },
  {
    id: "runbook section renamed",
    file: "docs/runbook.md",
    from: "## StockDeadLetters",
    to: "## Dead letters",
  },
  {
    id: "compose Prometheus without the rules mount",
    file: "compose.yaml",
    from: "      - ./grafana/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro\n",
    to: "",
  },
  // Grafana.
  {
    id: "Grafana refresh back to 10s",
    file: "grafana/dashboards/cluster.json",
    from: '"refresh": "5s"',
    to: '"refresh": "10s"',
  },
  {
    id: "Grafana provider without a folder uid",
    file: "grafana/provisioning/dashboards/stock.yaml",
    from: "    folderUid: stock-analytics\n",
    to: "",
  },
];

/** Survivors accepted on purpose, with the reason (none today). */
export const ACCEPTED_SURVIVORS: Record<string, string> = {};
