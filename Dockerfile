# The example consumers as a service: `warren run consumers/app.ts`, probes on :9464.
# Built and started by docker-compose.yml; `docker compose up -d` runs it beside RabbitMQ.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
# All dependencies: zod, which the example contracts import, is a peer and dev dependency of warren.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY consumers ./consumers
COPY producers ./producers
ENV NODE_ENV=production
EXPOSE 9464
# tsx runs the TypeScript sources without a build step. node itself is PID 1 (no npx or tsx
# wrapper in between), so `docker compose stop`'s SIGTERM reaches warren's graceful stop.
ENTRYPOINT ["node", "--import", "tsx", "src/cli/main.ts"]
CMD ["run", "consumers/app.ts", "--metrics-port", "9464"]
