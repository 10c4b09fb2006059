// runs.subscribeToRun through a run's whole life (the test starts the worker of its queue
// once the subscription saw QUEUED), then with the run's public token; then
// subscribeToRunsWithTag and subscribeToBatch while their runs execute.
import { emit, runs, step, tasks, unique, useKey } from "./_sdk.mjs";

useKey();
const queue = process.env.E2E_QUEUE;

const handle = await step("trigger", () =>
  tasks.trigger("sleepy", { seconds: 1 }, { queue, tags: ["realtime-e2e"] }),
);

if (handle) {
  await step("subscribe-to-run", async () => {
    const seen = [];
    let last;
    for await (const run of runs.subscribeToRun(handle.id)) {
      if (seen.at(-1) !== run.status) {
        seen.push(run.status);
        emit("status", { ok: true, result: { status: run.status } });
      }
      last = run;
    }
    return {
      seen,
      id: last.id,
      output: last.output,
      finishedAtIsDate: last.finishedAt instanceof Date,
      isSuccess: last.isSuccess,
      tags: last.tags,
    };
  });
  await step("subscribe-with-public-token", async () => {
    useKey(handle.publicAccessToken);
    try {
      const rows = [];
      for await (const run of runs.subscribeToRun(handle.id)) rows.push(run);
      return rows.map((run) => ({ status: run.status, hasOutput: run.output !== undefined }));
    } finally {
      useKey();
    }
  });
}

async function collectUntil(subscription, done) {
  const latest = new Map();
  for await (const run of subscription) {
    latest.set(run.id, run);
    if (done(latest)) break;
  }
  return [...latest.values()];
}

const tag = unique("rt-tag");
await step("subscribe-to-runs-with-tag", async () => {
  const subscription = runs.subscribeToRunsWithTag(tag);
  const collecting = collectUntil(
    subscription,
    (latest) => latest.size === 2 && [...latest.values()].every((run) => run.isCompleted),
  );
  const triggered = [];
  for (const name of ["t1", "t2"]) {
    triggered.push((await tasks.trigger("hello-world", { name }, { tags: [tag] })).id);
  }
  await tasks.trigger("hello-world", { name: "untagged" }, { tags: ["other-tag"] });
  const found = await collecting;
  return {
    triggered: triggered.sort(),
    seen: found.map((run) => run.id).sort(),
    statuses: [...new Set(found.map((run) => run.status))],
  };
});

await step("subscribe-to-batch", async () => {
  const handle = await tasks.batchTrigger("hello-world", [
    { payload: { name: "b0" } },
    { payload: { name: "b1" } },
    { payload: { name: "b2" } },
  ]);
  const found = await collectUntil(
    runs.subscribeToBatch(handle.batchId),
    (latest) => latest.size === 3 && [...latest.values()].every((run) => run.isCompleted),
  );
  return {
    count: found.length,
    statuses: [...new Set(found.map((run) => run.status))],
    outputs: found.map((run) => run.output?.message).sort(),
  };
});
