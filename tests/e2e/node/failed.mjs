// A run that fails every attempt: the SDK parses its error and the FAILED status, and
// runs.list finds it by status. Polling also passes through the retry wait (shown as QUEUED).
import { completed, retrieveUntil, runs, step, tasks, useKey } from "./_sdk.mjs";

useKey();

const handle = await step("trigger", () => tasks.trigger("test-fail-until", { why: "e2e" }));
if (handle) {
  await step("failed", () => retrieveUntil(handle.id, completed));
  await step("list-failed", async () => {
    const ids = [];
    for await (const run of runs.list({ status: ["FAILED"], taskIdentifier: "test-fail-until" })) {
      ids.push(run.id);
    }
    return { ids };
  });
}
await step("trigger-text", async () => {
  const text = await tasks.trigger("hello-world", "just text", { delay: "1h" });
  const run = await runs.retrieve(text.id);
  return { id: run.id, payload: run.payload, status: run.status };
});
