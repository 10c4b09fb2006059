// A payload of 128 KiB or more is offloaded by the SDK before triggering: PUT
// /api/v2/packets/{path} answers {presignedUrl, storagePath}, the SDK PUTs the data there,
// then triggers with payloadType "application/store" and the storagePath as the payload.
// runs.retrieve then downloads it from payloadPresignedUrl and returns it inline.
import { completed, retrieveUntil, step, tasks, useKey } from "./_sdk.mjs";

useKey();
const sizes = (process.env.E2E_PAYLOAD_KIB ?? "200").split(",").map(Number);

for (const kib of sizes) {
  const blob = "y".repeat(kib * 1024);
  const handle = await step(`trigger-${kib}`, () =>
    tasks.trigger("hello-world", { name: "Big", blob, when: new Date("2026-01-01T00:00:00Z") }),
  );
  if (handle) {
    await step(`completed-${kib}`, async () => {
      const { run } = await retrieveUntil(handle.id, completed, { timeoutMs: 40000 });
      return {
        id: run.id,
        status: run.status,
        blobLength: run.payload?.blob?.length,
        whenIsDate: run.payload?.when instanceof Date,
        name: run.payload?.name,
        output: run.output,
        hasPayloadUrl: typeof run.payloadPresignedUrl === "string",
      };
    });
  }
}
