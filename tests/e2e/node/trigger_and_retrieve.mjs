// tasks.trigger -> runs.retrieve until COMPLETED; then a retrieve with the run's public token.
import { completed, retrieveUntil, runs, step, tasks, useKey } from "./_sdk.mjs";

useKey();

const handle = await step("trigger", async () => {
  const result = await tasks.trigger(
    "hello-world",
    { name: "Ada", when: new Date("2026-01-01T00:00:00.000Z") },
    { tags: ["e2e", "user_1"], ttl: "10m", maxAttempts: 2, metadata: { source: "e2e" } },
  );
  return { ...result, hasPublicAccessToken: typeof result.publicAccessToken === "string" };
});

if (handle) {
  await step("completed", () => retrieveUntil(handle.id, completed));
  await step("retrieve-with-public-token", async () => {
    useKey(handle.publicAccessToken);
    try {
      const run = await runs.retrieve(handle.id);
      return { id: run.id, status: run.status, hasPayload: "payload" in run, hasOutput: "output" in run };
    } finally {
      useKey();
    }
  });
}
