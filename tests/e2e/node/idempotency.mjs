// The same idempotencyKey twice returns the same run (isCached); another key a new run.
import { retrieveUntil, runs, step, tasks, unique, useKey } from "./_sdk.mjs";

useKey();
const key = unique("order");

const first = await step("first", () => tasks.trigger("hello-world", { n: 1 }, { idempotencyKey: key }));
await step("second", () => tasks.trigger("hello-world", { n: 2 }, { idempotencyKey: key }));
await step("other-key", () =>
  tasks.trigger("hello-world", { n: 3 }, { idempotencyKey: unique("order") }),
);
if (first) {
  await step("retrieve-first", async () => {
    const run = await runs.retrieve(first.id);
    return { id: run.id, idempotencyKey: run.idempotencyKey, key };
  });
  await step("first-completed", () => retrieveUntil(first.id, (run) => run.isCompleted));
  await step("after-completion", () => tasks.trigger("hello-world", { n: 4 }, { idempotencyKey: key }));
}
