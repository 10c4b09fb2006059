// runs.list with filters auto-paginates (page size 2) over every matching run, newest first.
import { completed, retrieveUntil, runs, step, tasks, useKey } from "./_sdk.mjs";

useKey();
const count = Number(process.env.E2E_RUN_COUNT ?? 5);

const startedAt = Date.now();
const triggered = await step("trigger", async () => {
  const ids = [];
  for (let i = 0; i < count; i++) {
    ids.push((await tasks.trigger("hello-world", { i })).id);
  }
  const delayed = await tasks.trigger("hello-world", { i: "delayed" }, { delay: "1h" });
  return { ids, delayedId: delayed.id };
});

if (triggered) {
  await step("all-completed", async () => {
    for (const id of triggered.ids) await retrieveUntil(id, completed);
    return { count: triggered.ids.length };
  });
  const filter = { taskIdentifier: "hello-world", status: ["COMPLETED", "FAILED"], limit: 2 };
  await step("list", async () => {
    const items = [];
    for await (const run of runs.list(filter)) {
      items.push({ id: run.id, status: run.status, env: run.env, createdAt: run.createdAt });
    }
    return { items };
  });
  await step("pages", async () => {
    const sizes = [];
    for await (const page of (await runs.list(filter)).iterPages()) sizes.push(page.data.length);
    return { sizes };
  });
  await step("list-delayed", async () => {
    const ids = [];
    for await (const run of runs.list({ status: "DELAYED", taskIdentifier: ["hello-world"] })) {
      ids.push(run.id);
    }
    return { ids };
  });
  await step("list-created-range", async () => {
    const count = async (query) => {
      let n = 0;
      for await (const _run of runs.list({ ...query, limit: 100 })) n++;
      return n;
    };
    return {
      fromBeforeStart: await count({ from: new Date(startedAt - 5000) }),
      toBeforeStart: await count({ to: new Date(startedAt - 60000) }),
      lastHour: await count({ period: "1h" }),
    };
  });
  // runs.list(projectRef, filters): the same list through the project's ref.
  const ref = process.env.E2E_PROJECT_REF;
  if (ref) {
    await step("list-by-project-ref", async () => {
      const ids = [];
      for await (const run of runs.list(ref, { ...filter, env: "dev" })) ids.push(run.id);
      return { ids };
    });
    await step("list-by-other-ref", () => runs.list("proj_" + "0".repeat(20), filter));
  }
}
