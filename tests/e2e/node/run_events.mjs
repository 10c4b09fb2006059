// A run's events (GET /api/v1/runs/{id}/events) through the official SDK's apiClient
// (listRunEvents): the lines the task logged, as log events; a public token scoped to
// the run reads them, one scoped to another run gets 404.
import { apiClientManager } from "@trigger.dev/core/v3";
import { auth } from "@trigger.dev/sdk";
import { completed, retrieveUntil, runs, secretKey, step, tasks, useKey } from "./_sdk.mjs";

useKey();

const handle = await step("trigger", () => tasks.trigger("logs-mixed", {}));
const other = await tasks.trigger("logs-none", {});

async function as(token, body) {
  useKey(token);
  try {
    return await body();
  } finally {
    useKey(secretKey);
  }
}

if (handle) {
  await step("completed", async () => {
    const { run } = await retrieveUntil(handle.id, completed);
    return { status: run.status };
  });
  await step("events", async () => {
    const { events } = await apiClientManager.clientOrThrow().listRunEvents(handle.id);
    return events;
  });
  const token = await auth.createPublicToken({ scopes: { read: { runs: [handle.id] } } });
  await step("public-token-events", () =>
    as(token, async () => (await apiClientManager.clientOrThrow().listRunEvents(handle.id)).events.length),
  );
  await step("public-token-other-run", () =>
    as(token, () => apiClientManager.clientOrThrow().listRunEvents(other.id)),
  );
  await step("retrieve", async () => (await runs.retrieve(handle.id)).status);
}
