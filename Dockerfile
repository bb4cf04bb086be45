# chartlog image: the compiled CLI on Node 20. Used by docker-compose.yml; builds anywhere
# with `docker build -t chartlog .`.
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
COPY connectors ./connectors
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-slim
# MALLOC_ARENA_MAX: the environment of bin/chartlog.js's first line (docs/operations.md "Memory").
ENV NODE_ENV=production MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
# Named volumes mounted here take this ownership, so the unprivileged user can write the
# keyring (0600) and local spill files.
RUN mkdir -p /var/lib/chartlog/keys /var/lib/chartlog/work && chown -R node:node /var/lib/chartlog
USER node
# The node flags of bin/chartlog.js's first line (the young generation size: docs/operations.md "Memory").
ENTRYPOINT ["node", "--max-semi-space-size=4", "/app/bin/chartlog.js"]
CMD ["run", "--config", "/etc/chartlog/chartlog.yaml"]
