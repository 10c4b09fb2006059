// schedules.* of the official SDK: every call, in the shapes its zod schemas accept.
import { schedules } from "@trigger.dev/sdk";
import { step, unique, useKey } from "./_sdk.mjs";

useKey();
const key = unique("dedup");
const shape = (s) => ({
  ...s,
  nextRunIsDate: s.nextRun === undefined || s.nextRun instanceof Date,
});

await step("timezones", async () => {
  const all = (await schedules.timezones()).timezones;
  const withoutUtc = (await schedules.timezones({ excludeUtc: true })).timezones;
  return { first: all[0], count: all.length, withoutUtc: withoutUtc.length,
           hasNewYork: all.includes("America/New_York") };
});

const created = await step("create", async () =>
  shape(await schedules.create({
    task: "test-echo", cron: "0 9 * * *", timezone: "America/New_York",
    externalId: "user_1", deduplicationKey: key,
  })));

if (created) {
  await step("create-again", async () =>
    shape(await schedules.create({
      task: "test-echo", cron: "0 9 * * *", timezone: "America/New_York",
      externalId: "user_1", deduplicationKey: key,
    })));
  await step("retrieve", async () => shape(await schedules.retrieve(created.id)));
  const tick = await step("create-tick", async () =>
    shape(await schedules.create({ task: "test-echo", cron: "*/5 * * * *", externalId: "ticker",
                                   deduplicationKey: unique("tick") })));
  await step("list", async () => {
    const ids = [];
    for await (const s of schedules.list({ perPage: 1 })) ids.push(s.id);
    const first = await schedules.list({ perPage: 1 });
    return { ids, pagination: first.pagination, tickId: tick?.id };
  });
  await step("update", async () =>
    shape(await schedules.update(created.id, {
      task: "test-echo", cron: "*/15 * * * *", timezone: "Europe/Paris", externalId: "user_2",
    })));
  await step("deactivate", async () => shape(await schedules.deactivate(created.id)));
  await step("activate", async () => shape(await schedules.activate(created.id)));
  await step("del", async () => await schedules.del(created.id));
  await step("retrieve-deleted", async () => await schedules.retrieve(created.id));
}

await step("bad-cron", async () =>
  await schedules.create({ task: "test-echo", cron: "61 * * * *", deduplicationKey: unique("b") }));
await step("bad-timezone", async () =>
  await schedules.create({ task: "test-echo", cron: "0 * * * *", timezone: "Mars/Olympus",
                           deduplicationKey: unique("b") }));
await step("unknown-task", async () =>
  await schedules.create({ task: "no-such-task", cron: "0 * * * *", deduplicationKey: unique("b") }));
