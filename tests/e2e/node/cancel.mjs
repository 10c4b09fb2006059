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
