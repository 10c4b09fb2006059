// The SDK surfaces Reprise's errors as its own ApiError subclasses with the status.
import { runs, step, tasks, useKey } from "./_sdk.mjs";

useKey();
const unknownId = `run_${"x".repeat(8)}${Math.random().toString(36).slice(2, 14).padEnd(12, "0")}`;

await step("retrieve-unknown", () => runs.retrieve(unknownId));
await step("retrieve-malformed", () => runs.retrieve("not-a-run-id"));
await step("trigger-unknown-task", () => tasks.trigger("no-such-task", {}));
await step("trigger-eleven-tags", () =>
  tasks.trigger("hello-world", {}, { tags: Array.from({ length: 11 }, (_, i) => `t${i}`) }),
);

useKey(`tr_dev_${"0".repeat(24)}`);
await step("wrong-key-retrieve", () => runs.retrieve(unknownId));
await step("wrong-key-trigger", () => tasks.trigger("hello-world", {}));
await step("wrong-key-list", async () => {
  for await (const run of runs.list({ limit: 1 })) return { id: run.id };
  return {};
});
