// wait.createToken, listTokens, retrieveToken and completeToken of the official SDK, and a
// POST to a token's callback URL with fetch, in the shapes its zod schemas accept.
import { auth, wait } from "@trigger.dev/sdk";
import { step, unique, useKey } from "./_sdk.mjs";

useKey();
const when = (d) => (d instanceof Date ? "date" : d === undefined ? "absent" : typeof d);
const tag = unique("order");
const key = unique("approve");

const created = await step("create", async () =>
  await wait.createToken({ idempotencyKey: key, idempotencyKeyTTL: "1h", timeout: "1h",
                           tags: [tag, "team:ops"] }));
await step("create-again", async () => await wait.createToken({ idempotencyKey: key }));
const plain = await step("create-plain", async () =>
  await wait.createToken({ tags: tag, timeout: new Date(Date.now() + 3600_000) }));
const byUrl = await step("create-for-url", async () => await wait.createToken({ tags: tag }));

await step("retrieve-waiting", async () => {
  const token = await wait.retrieveToken(created.id);
  return { ...token, dates: { createdAt: when(token.createdAt), timeoutAt: when(token.timeoutAt),
                              completedAt: when(token.completedAt),
                              idempotencyKeyExpiresAt: when(token.idempotencyKeyExpiresAt) } };
});
await step("list-by-tag", async () => {
  const ids = [];
  for await (const token of wait.listTokens({ tags: [tag] })) ids.push(token.id);
  const first = await wait.listTokens({ tags: tag, limit: 1 });
  return { ids, firstPage: first.data.map((t) => t.id), hasNext: first.hasNextPage(),
           createdAtIsDate: first.data[0]?.createdAt instanceof Date };
});

await step("complete", async () =>
  await wait.completeToken(created.id, { approved: true, by: "ann" }));
await step("complete-again", async () =>
  await wait.completeToken(created, { approved: false }));
await step("retrieve-completed", async () => {
  const token = await wait.retrieveToken(created);
  return { ...token, completedAt: when(token.completedAt) };
});

await step("callback-url", async () => {
  const response = await fetch(byUrl.url, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ status: "paid" }),
  });
  return { status: response.status, body: await response.json() };
});
await step("callback-url-wrong-hash", async () => {
  const response = await fetch(byUrl.url.slice(0, -4) + "0000", { method: "POST", body: "{}" });
  return { status: response.status, body: await response.json() };
});
await step("retrieve-after-callback", async () => (await wait.retrieveToken(byUrl.id)).output);

await step("list-by-status", async () => {
  const completed = [];
  for await (const token of wait.listTokens({ status: "COMPLETED", tags: [tag] })) {
    completed.push(token.id);
  }
  const waiting = [];
  for await (const token of wait.listTokens({ status: ["WAITING"], tags: [tag] })) {
    waiting.push(token.id);
  }
  const recent = [];
  for await (const token of wait.listTokens({ tags: [tag], period: "1h",
                                               from: new Date(Date.now() - 600_000) })) {
    recent.push(token.id);
  }
  return { completed, waiting, recent };
});

// The publicAccessToken createToken returns completes that token and no other.
await step("public-token-completes", async () =>
  await auth.withAuth({ accessToken: plain.publicAccessToken }, async () =>
    await wait.completeToken(plain.id, { via: "jwt" })));
await step("public-token-other-token", async () => {
  const other = await wait.createToken({});
  return await auth.withAuth({ accessToken: plain.publicAccessToken }, async () =>
    await wait.completeToken(other.id, { via: "jwt" }));
});
// A token whose timeout passes: retrieveToken gives a WaitpointTimeoutError, no output.
await step("timed-out", async () => {
  const token = await wait.createToken({ timeout: "1s", tags: [tag] });
  const deadline = Date.now() + 20000;
  for (;;) {
    const read = await wait.retrieveToken(token.id);
    if (read.status !== "WAITING") {
      return { status: read.status, output: read.output ?? "absent",
               errorName: read.error?.name, errorMessage: read.error?.message };
    }
    if (Date.now() > deadline) throw new Error(`${token.id} still WAITING`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
});
await step("retrieve-unknown", async () => await wait.retrieveToken("waitpoint_nope"));
await step("list-bad-status", async () => await wait.listTokens({ status: "DONE" }));
