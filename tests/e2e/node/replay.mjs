// runs.replay of a finished run -> a new run id, readable at once, that reaches COMPLETED.
import { completed, retrieveUntil, runs, step, summarise, tasks, useKey } from "./_sdk.mjs";

useKey();

const original = await step("trigger", () => tasks.trigger("hello-world", { name: "Grace" }));
if (original) {
  await step("original-completed", () => retrieveUntil(original.id, completed));
  const replay = await step("replay", () => runs.replay(original.id));
  if (replay) {
    await step("retrieve-replay-at-once", async () => summarise(await runs.retrieve(replay.id)));
    await step("replay-completed", () => retrieveUntil(replay.id, completed));
  }
  // A body value the server cannot use: the error names the field.
  await step("replay-bad-ttl", () => runs.replay(original.id, { ttl: "forever" }));
}
