// A run a schedule's tick created, seen through the SDK: its schedule and runs.list({ schedule }).
import { completed, retrieveUntil, runs, step, useKey } from "./_sdk.mjs";

useKey();
const scheduleId = process.env.E2E_SCHEDULE_ID;
const runId = process.env.E2E_RUN_ID;

await step("retrieve", async () => (await retrieveUntil(runId, completed)).run);
await step("list-by-schedule", async () => {
  const ids = [];
  for await (const run of runs.list({ schedule: scheduleId })) ids.push(run.id);
  return { ids };
});
