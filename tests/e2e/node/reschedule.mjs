// runs.reschedule of a delayed run with a duration and with a Date returns the moved run.
import { runs, step, summarise, tasks, useKey } from "./_sdk.mjs";

useKey();

const handle = await step("trigger-delayed", () => tasks.trigger("hello-world", {}, { delay: "1h" }));
if (handle) {
  await step("reschedule-duration", async () => {
    const before = Date.now();
    const run = await runs.reschedule(handle.id, { delay: "2h" });
    return { run: summarise(run), before, after: Date.now() };
  });
  const at = new Date(Date.now() + 3 * 3600 * 1000);
  at.setMilliseconds(0);
  await step("reschedule-date", async () => ({
    run: summarise(await runs.reschedule(handle.id, { delay: at })),
    at: at.toISOString(),
  }));
  await step("retrieve", async () => summarise(await runs.retrieve(handle.id)));
  await runs.cancel(handle.id);
  await step("reschedule-not-delayed", () => runs.reschedule(handle.id, { delay: "2h" }));
}
