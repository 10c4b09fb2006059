// A payload of 128 KiB or more is offloaded by the SDK before triggering: PUT
// /api/v2/packets/{path} must answer {presignedUrl, storagePath}, the SDK PUTs the data there,
// then triggers with payloadType "application/store" and the storagePath as the payload.
import { completed, retrieveUntil, step, tasks, useKey } from "./_sdk.mjs";

useKey();
const blob = "y".repeat(200 * 1024);

const handle = await step("trigger", () => tasks.trigger("hello-world", { blob }));
if (handle) {
  await step("completed", async () => {
    const { run } = await retrieveUntil(handle.id, completed);
    return { status: run.status, blobLength: run.payload?.blob?.length };
  });
}
