// A run's trace through the official client: apiClient.retrieveRunTrace (the whole tree)
// and retrieveRunTracePage (the same spans flat, page by page, rebuilt with
// assembleRunTracePages, with retrieveSpan for one span's details), for a run retried twice, for a parent with a child and for a durable run's steps and wait; a public
// token reads the trace of the run it names only.
import { apiClientManager, assembleRunTracePages } from "@trigger.dev/core/v3";
import { auth } from "@trigger.dev/sdk";
import { completed, retrieveUntil, secretKey, step, tasks, useKey } from "./_sdk.mjs";

useKey();

// What a test needs of a span: its shape after zod, dates still Dates.
function tree(span) {
  return {
    id: span.id,
    parentId: span.parentId,
    runId: span.runId,
    message: span.data.message,
    kind: span.data.properties?.kind,
    status: span.data.properties?.status,
    linkedRunId: span.data.properties?.linkedRunId,
    startIsDate: span.data.startTime instanceof Date,
    durationMs: span.data.duration / 1_000_000,
    isError: span.data.isError,
    isPartial: span.data.isPartial,
    events: (span.data.events ?? []).length,
    children: span.children.map(tree),
  };
}

const flat = (span) => ({
  id: span.id,
  parentId: span.parentId,
  attemptNumber: span.attemptNumber,
  children: span.children.map(flat),
});

const client = () => apiClientManager.clientOrThrow();

const retried = await step("trigger-retried", () => tasks.trigger("trace-retried", {}));
if (retried) {
  await retrieveUntil(retried.id, completed);
  await step("trace-retried", async () => {
    const { trace } = await client().retrieveRunTrace(retried.id);
    return { traceId: trace.traceId, root: tree(trace.rootSpan) };
  });
  await step("trace-pages", async () => {
    const pages = [];
    let after;
    do {
      const page = await client().retrieveRunTracePage(retried.id, { limit: 2, after });
      pages.push(page);
      after = page.pagination.next;
    } while (after && pages.length < 20);
    const roots = assembleRunTracePages(pages);
    // Paged spans are lean: retrieveSpan gives one with its properties and events.
    const detail = await client().retrieveSpan(retried.id, `${retried.id}:attempt:2`);
    return {
      pages: pages.length,
      sizes: pages.map((p) => p.data.length),
      failures: pages.flatMap((p) => p.attemptFailures),
      roots: roots.map(flat),
      detail: { ...detail, startIsDate: detail.startTime instanceof Date },
    };
  });
}

const parent = await step("trigger-parent", () => tasks.trigger("trace-parent", {}));
if (parent) {
  await retrieveUntil(parent.id, completed);
  await step("trace-parent", async () => {
    const { trace } = await client().retrieveRunTrace(parent.id);
    return { traceId: trace.traceId, root: tree(trace.rootSpan) };
  });
  await step("span-of-parent-attempt", () => client().retrieveSpan(parent.id, `${parent.id}:attempt:1`));
  await step("span-unknown", () => client().retrieveSpan(parent.id, "no-such-span"));
}

// A durable run: its steps and its wait are spans of the attempts that did them, and the
// attempt after the wait says it resumed; the paged trace rebuilds to the same tree.
const durable = await step("trigger-durable", () => tasks.trigger("durable-steps", { wait: 0.5 }));
if (durable) {
  await retrieveUntil(durable.id, completed);
  await step("trace-durable", async () => {
    const { trace } = await client().retrieveRunTrace(durable.id);
    const pages = [await client().retrieveRunTracePage(durable.id, { limit: 100 })];
    return { root: tree(trace.rootSpan), roots: assembleRunTracePages(pages).map(flat) };
  });
}

if (retried && parent) {
  const token = await auth.createPublicToken({
    scopes: { read: { runs: [retried.id] } },
    expirationTime: "1h",
  });
  useKey(token);
  await step("token-reads-its-trace", async () => {
    const { trace } = await client().retrieveRunTrace(retried.id);
    return { id: trace.rootSpan.id };
  });
  await step("token-reads-no-other-trace", () => client().retrieveRunTrace(parent.id));
  useKey(secretKey);
}
await step("unknown-run", () => client().retrieveRunTrace("run_doesnotexist0000000000"));
