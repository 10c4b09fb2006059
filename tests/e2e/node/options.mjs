// Options the SDK sends are honoured or refused with a 400 naming them: version (lock),
// region, run-list filters Reprise cannot apply; runs.replay with every option it takes.
import { completed, retrieveUntil, runs, step, tasks, unique, useKey } from "./_sdk.mjs";

useKey();
const version = process.env.E2E_WORKER_VERSION;

await step("unknown-version", () => tasks.trigger("hello-world", {}, { version: "19990101.1" }));
await step("region", () => tasks.trigger("hello-world", {}, { region: "eu-central-1" }));
const locked = await step("locked-to-current", () =>
  tasks.trigger("hello-world", { name: "Locked" }, { version }),
);
if (locked) await step("locked-completed", () => retrieveUntil(locked.id, completed));
for (const filter of ["schedule", "bulkAction", "batch", "queue", "machine", "region"]) {
  await step(`list-${filter}`, async () => {
    const page = await runs.list({ [filter]: "nothing-has-this" });
    return page.data.length;
  });
}

const original = await step("trigger", () => tasks.trigger("hello-world", { name: "Orig" }));
if (original) {
  await retrieveUntil(original.id, completed);
  const key = unique("replay");
  const replayOptions = {
    payload: { name: "Replayed", when: new Date("2026-01-01T00:00:00Z") },
    idempotencyKey: key,
    concurrencyKey: "tenant-7",
    machine: "small-2x",
    maxDuration: 120,
    version,
    tags: ["replayed"],
  };
  const first = await step("replay-1", () => runs.replay(original.id, replayOptions));
  await step("replay-2", () => runs.replay(original.id, replayOptions));
  if (first) await step("replay-completed", () => retrieveUntil(first.id, completed));
  await step("replay-region", () => runs.replay(original.id, { region: "eu-central-1" }));
  await step("replay-unknown-version", () => runs.replay(original.id, { version: "19990101.1" }));
}
