// auth.createPublicToken / createTriggerPublicToken (signed by the SDK with the secret key):
// what each scope reads or triggers, one-time use, expiry; the secret key reads everything.
import { auth } from "@trigger.dev/sdk";
import { completed, retrieveUntil, runs, secretKey, step, tasks, unique, useKey } from "./_sdk.mjs";

useKey();
const tag = unique("tok");
const tagged = await tasks.trigger("hello-world", { name: "tagged" }, { tags: [tag] });
const other = await tasks.trigger("hello-world", { name: "other" });
await retrieveUntil(tagged.id, completed);

async function as(token, body) {
  useKey(token);
  try {
    return await body();
  } finally {
    useKey(secretKey);
  }
}

const summary = (run) => ({ id: run.id, status: run.status });

const runToken = await step("create-run-token", () =>
  auth.createPublicToken({ scopes: { read: { runs: [tagged.id] } }, expirationTime: "1h" }),
);
await step("run-token-reads-its-run", () => as(runToken, async () => summary(await runs.retrieve(tagged.id))));
await step("run-token-reads-no-other", () => as(runToken, () => runs.retrieve(other.id)));
await step("run-token-subscribes", () =>
  as(runToken, async () => {
    const seen = [];
    for await (const run of runs.subscribeToRun(tagged.id)) seen.push(run.status);
    return seen;
  }),
);
// The server answers 404; the SDK's runs.subscribeToRun passes no onFetchError, so its
// loop neither yields nor ends: what the token gets is no row at all.
await step("run-token-cannot-subscribe-to-another", () =>
  as(runToken, async () => {
    const rows = [];
    const loop = (async () => {
      for await (const run of runs.subscribeToRun(other.id)) rows.push(run.id);
      return "ended";
    })();
    const waited = new Promise((resolve) => setTimeout(() => resolve("no end"), 1500));
    return { rows, outcome: await Promise.race([loop, waited]) };
  }),
);
await step("run-token-cannot-trigger", () =>
  as(runToken, () => tasks.trigger("hello-world", { name: "x" })),
);

const tagToken = await step("create-tag-token", () =>
  auth.createPublicToken({ scopes: { read: { tags: [tag] } } }),
);
await step("tag-token-reads-tagged-run", () => as(tagToken, async () => summary(await runs.retrieve(tagged.id))));
await step("tag-token-reads-no-untagged-run", () => as(tagToken, () => runs.retrieve(other.id)));

const triggerToken = await step("create-trigger-token", () =>
  auth.createTriggerPublicToken("hello-world"),
);
await step("trigger-token-triggers", () =>
  as(triggerToken, () => tasks.trigger("hello-world", { name: "from a public token" })),
);
await step("trigger-token-is-one-time-use", () =>
  as(triggerToken, () => tasks.trigger("hello-world", { name: "again" })),
);
const multiToken = await auth.createTriggerPublicToken("hello-world", { multipleUse: true });
await step("multiple-use-trigger-token", () =>
  as(multiToken, async () => {
    const first = await tasks.trigger("hello-world", { name: "m1" });
    const second = await tasks.trigger("hello-world", { name: "m2" });
    return [first.id, second.id];
  }),
);
await step("trigger-token-other-task", () =>
  as(multiToken, () => tasks.trigger("test-echo", { n: 1 })),
);

const batchToken = await auth.createBatchTriggerPublicToken("hello-world");
await step("batch-trigger-token", () =>
  as(batchToken, async () => {
    const handle = await tasks.batchTrigger("hello-world", [
      { payload: { name: "bt1" } },
      { payload: { name: "bt2" } },
    ]);
    return { runCount: handle.runCount, batchId: handle.batchId };
  }),
);
await step("batch-trigger-token-is-one-time-use", () =>
  as(batchToken, () => tasks.batchTrigger("hello-world", [{ payload: { name: "bt3" } }])),
);
await step("batch-trigger-token-other-task", async () => {
  const token = await auth.createBatchTriggerPublicToken("hello-world", { multipleUse: true });
  return as(token, () => tasks.batchTrigger("test-echo", [{ payload: { n: 1 } }]));
});

await step("with-public-token", async () => {
  let seen;
  await auth.withPublicToken({ scopes: { read: { runs: [tagged.id] } } }, async () => {
    seen = summary(await runs.retrieve(tagged.id));
  });
  return seen;
});
await step("with-trigger-public-token", async () => {
  let id;
  // Another expiry than the one-time token above: two tokens signed in the same second
  // with the same claims are the same token (no jti), so that one would be spent already.
  await auth.withTriggerPublicToken("hello-world", { expirationTime: "2h" }, async () => {
    id = (await tasks.trigger("hello-world", { name: "with" })).id;
  });
  return id;
});
await step("with-auth", async () => {
  let seen;
  await auth.withAuth({ accessToken: runToken }, async () => {
    seen = summary(await runs.retrieve(tagged.id));
  });
  return seen;
});

const expired = await auth.createPublicToken({
  scopes: { read: { runs: [tagged.id] } },
  expirationTime: new Date(Date.now() - 60_000),
});
await step("expired-token", () => as(expired, () => runs.retrieve(tagged.id)));
const forged = `${runToken.slice(0, -4)}AAAA`;
await step("forged-token", () => as(forged, () => runs.retrieve(tagged.id)));
await step("secret-key-reads-everything", async () => [
  summary(await runs.retrieve(tagged.id)),
  summary(await runs.retrieve(other.id)),
]);
