// runs.bulk.*: replay failed runs by filter and poll it to completion, list and retrieve
// bulk actions, list the runs a bulk action made, cancel by ids, abort a paced replay.
import { completed, retrieveUntil, runs, step, tasks, unique, useKey } from "./_sdk.mjs";

useKey();
const tag = unique("bulk");

const failed = await step("trigger-failing", async () => {
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const handle = await tasks.trigger("test-fail-until", { i }, { tags: [tag], maxAttempts: 1 });
    ids.push(handle.id);
  }
  for (const id of ids) await retrieveUntil(id, completed);
  return { ids };
});

if (failed) {
  const created = await step("bulk-replay", () =>
    runs.bulk.replay({ filter: { status: "FAILED", tag }, name: "replay after the fix" })
  );
  if (created) {
    await step("poll", () => runs.bulk.poll(created.id, { pollIntervalMs: 100 }));
    await step("retrieve", () => runs.bulk.retrieve(created.id));
    await step("runs-of-bulk-action", async () => {
      const items = [];
      for await (const run of runs.list({ bulkAction: created.id })) items.push(run.id);
      return { count: items.length };
    });
  }
  await step("paced-then-aborted", async () => {
    const paced = await runs.bulk.replay({ runIds: failed.ids, maxPerSecond: 1 });
    const aborted = await runs.bulk.abort(paced.id);
    const state = await runs.bulk.retrieve(paced.id);
    return { aborted, status: state.status };
  });
}

await step("bulk-cancel-by-ids", async () => {
  const delayed = [];
  for (let i = 0; i < 2; i++) {
    delayed.push((await tasks.trigger("hello-world", { i }, { delay: "1h" })).id);
  }
  const created = await runs.bulk.cancel({ runIds: delayed });
  const done = await runs.bulk.poll(created.id, { pollIntervalMs: 100 });
  const statuses = [];
  for (const id of delayed) statuses.push((await runs.retrieve(id)).status);
  return { done, statuses };
});

await step("list", async () => {
  const items = [];
  for await (const bulk of runs.bulk.list({ limit: 2 })) {
    items.push({ id: bulk.id, type: bulk.type, status: bulk.status, dates: bulk.createdAt instanceof Date });
  }
  return { items };
});

await step("filter-without-fields", () => runs.bulk.replay({ filter: {} }));
