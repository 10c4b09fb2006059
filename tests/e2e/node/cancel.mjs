// runs.cancel of a delayed run -> CANCELED; cancelling a finished run still answers {id}.
import { runs, step, summarise, tasks, useKey } from "./_sdk.mjs";

useKey();

const handle = await step("trigger-delayed", () => tasks.trigger("hello-world", {}, { delay: "1h" }));
if (handle) {
  await step("retrieve-delayed", async () => summarise(await runs.retrieve(handle.id)));
  await step("cancel", () => runs.cancel(handle.id));
  await step("retrieve-canceled", async () => summarise(await runs.retrieve(handle.id)));
  await step("cancel-again", () => runs.cancel(handle.id));
}

const at = new Date(Date.now() + 2 * 3600 * 1000);
at.setMilliseconds(0);
await step("trigger-delayed-until-date", async () => {
  const run = await runs.retrieve((await tasks.trigger("hello-world", {}, { delay: at })).id);
  return { status: run.status, delayedUntil: run.delayedUntil, at: at.toISOString() };
});
