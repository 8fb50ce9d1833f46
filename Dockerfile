# syntax=docker/dockerfile:1
# One image for every role: SERVICES picks what a container runs (gateway, ingest, actors,
# query, notifier). Build: docker build -t stock-actors:0.1.0 .
# Checked statically by test/unit/deploy/dockerfile.test.ts.

# The base image of every stage, named once so that the stages cannot drift apart: Node 24 LTS (the
# major of package.json's engines) on Debian 12. The digest is what decides which image is pulled:
# with a digest, Docker ignores the tag, which is only there to tell readers what the digest is.
# This one is the multi-arch index published for node:24-bookworm-slim when that tag was Node
# 24.18.0. To take a newer Node 24 release (security fixes), look up the tag's current digest with
#   docker buildx imagetools inspect node:24-bookworm-slim
# and put its "Digest:" here (a build can try one without editing: --build-arg NODE_IMAGE=...).
ARG NODE_IMAGE=node:24-bookworm-slim@sha256:6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d

# Build: full dependency tree (TypeScript), compile to dist/.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY . .
RUN npm run build

# Production dependencies only, installed apart so the npm cache and dev tools stay out of the image.
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# lib/paths.ts finds the project root as the folder holding package.json: migrations/ and public/
# are read from beside it, so all four live in /app.
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY migrations ./migrations
COPY public ./public
# DATA_DIR (./data) is only written in embedded mode (no KAFKA_BROKERS / DATABASE_URL); the user
# that runs the app must own it.
RUN mkdir -p /app/data && chown 1000:1000 /app/data
# The image's "node" user, by number so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 5000 3030
# For plain Docker only (Kubernetes uses the probes in k8s/): /healthz where the node runs the
# gateway, else the metrics endpoint; a node with neither has nothing to ask and counts as healthy.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const e=process.env,s=e.SERVICES,g=!s||s.split(',').map(x=>x.trim()).includes('gateway'),m=e.METRICS_PORT||'3030',u=g?'http://127.0.0.1:'+(e.PORT||'5000')+'/healthz':m!=='0'?'http://127.0.0.1:'+m+'/metrics':null;if(!u)process.exit(0);require('http').get(u,r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).setTimeout(2500,()=>process.exit(1))"]
CMD ["node", "--enable-source-maps", "dist/bin/start.js"]
