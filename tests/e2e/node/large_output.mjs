// An output over Reprise's inline limit is served through outputPresignedUrl (an HMAC-signed
// URL on the API); runs.retrieve downloads it itself and returns the output inline.
import { completed, retrieveUntil, step, tasks, useKey } from "./_sdk.mjs";

useKey();
const bytes = Number(process.env.E2E_OUTPUT_BYTES ?? 600 * 1024);

const handle = await step("trigger", () => tasks.trigger("test-large-output", { bytes }));
if (handle) {
  await step("completed", async () => {
    const { run } = await retrieveUntil(handle.id, completed);
    return {
      status: run.status,
      blobLength: run.output?.blob?.length,
      hasOutputUrl: typeof run.outputPresignedUrl === "string",
    };
  });
}
