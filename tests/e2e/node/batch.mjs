// tasks.batchTrigger of E2E_BATCH_SIZE items -> batch.retrieve -> runs.list({ batch }) until
// every run completed; batch.trigger and batch.triggerByTask; an idempotent batch; the
// batch's public token.
import { batch, task } from "@trigger.dev/sdk";
import { runs, step, tasks, unique, useKey } from "./_sdk.mjs";

useKey();
const size = Number(process.env.E2E_BATCH_SIZE ?? "100");

async function listBatch(batchId) {
  const found = [];
  for await (const run of runs.list({ batch: batchId, limit: 100 })) found.push(run);
  return found;
}

async function untilAllCompleted(batchId, expected, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await listBatch(batchId);
    if (found.length === expected && found.every((run) => run.isCompleted)) return found;
    if (Date.now() > deadline) {
      const statuses = found.map((run) => run.status);
      throw new Error(`batch ${batchId}: ${found.length} runs, statuses ${statuses}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const items = Array.from({ length: size }, (_, i) => ({
  payload: { name: `n${i}` },
  options: { tags: ["batch-e2e"], metadata: { index: i } },
}));

const handle = await step("batch-trigger", async () => {
  const started = performance.now();
  const result = await tasks.batchTrigger("hello-world", items);
  const elapsedMs = performance.now() - started;
  return { ...result, elapsedMs, hasPublicAccessToken: typeof result.publicAccessToken === "string" };
});
// The same items as single triggers, one after the other: what the batch saves a caller.
await step("singles", async () => {
  const started = performance.now();
  for (const item of items.slice(0, Number(process.env.E2E_SINGLES ?? "0"))) {
    await tasks.trigger("hello-world", item.payload, item.options);
  }
  return { elapsedMs: performance.now() - started };
});

if (handle) {
  await step("retrieve", async () => {
    const retrieved = await batch.retrieve(handle.batchId);
    return { ...retrieved, createdAtIsDate: retrieved.createdAt instanceof Date };
  });
  await step("all-completed", async () => {
    const found = await untilAllCompleted(handle.batchId, size);
    const outputs = await Promise.all(found.slice(0, 3).map((run) => runs.retrieve(run.id)));
    return {
      ids: found.map((run) => run.id),
      batchIds: [...new Set(outputs.map((run) => run.batchId))],
      triggerFunctions: [...new Set(outputs.map((run) => run.triggerFunction))],
      statuses: [...new Set(found.map((run) => run.status))],
      names: outputs.map((run) => run.output?.message),
      metadata: outputs.map((run) => run.metadata),
    };
  });
  await step("retrieve-after", () => batch.retrieve(handle.batchId));
  await step("retrieve-with-public-token", async () => {
    useKey(handle.publicAccessToken);
    try {
      return await batch.retrieve(handle.batchId);
    } finally {
      useKey();
    }
  });
}

const byId = await step("batch-trigger-by-id", () =>
  batch.trigger([
    { id: "hello-world", payload: { name: "by-id" } },
    { id: "test-echo", payload: { n: 1 }, options: { tags: ["by-id"] } },
  ]),
);
if (byId) {
  await step("by-id-completed", async () => {
    const found = await untilAllCompleted(byId.batchId, 2);
    return found.map((run) => run.taskIdentifier).sort();
  });
}

const helloWorld = task({ id: "hello-world", run: async () => undefined });
const echo = task({ id: "test-echo", run: async () => undefined });
const byTask = await step("batch-trigger-by-task", () =>
  batch.triggerByTask([
    { task: helloWorld, payload: { name: "by-task" } },
    { task: echo, payload: { n: 2 } },
  ]),
);
if (byTask) {
  await step("by-task-completed", async () => {
    const found = await untilAllCompleted(byTask.batchId, 2);
    return found.map((run) => run.taskIdentifier).sort();
  });
}

const key = unique("batch-key");
await step("idempotent-batch", async () => {
  const first = await tasks.batchTrigger("hello-world", [{ payload: { name: "a" } }], {
    idempotencyKey: key,
  });
  const second = await tasks.batchTrigger("hello-world", [{ payload: { name: "a" } }], {
    idempotencyKey: key,
  });
  const found = await untilAllCompleted(first.batchId, 1);
  return { first: first.batchId, second: second.batchId, runs: found.length };
});

await step("unknown-task-item", async () => {
  const result = await batch.trigger([
    { id: "hello-world", payload: { name: "ok" } },
    { id: "no-such-task-anywhere", payload: {} },
  ]);
  return await batch.retrieve(result.batchId);
});
