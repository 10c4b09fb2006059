// Shared plumbing for the driver scripts: configure the official SDK from the environment,
// report each step as one JSON line on stdout, and poll runs through the SDK itself.
import { configure, runs, tasks } from "@trigger.dev/sdk";

export { configure, runs, tasks };

export const baseURL = process.env.TRIGGER_API_URL;
export const secretKey = process.env.TRIGGER_SECRET_KEY;

export function useKey(accessToken = secretKey) {
  if (!baseURL || !accessToken) {
    throw new Error("TRIGGER_API_URL and TRIGGER_SECRET_KEY must be set");
  }
  configure({ baseURL, accessToken });
}

export function emit(step, record) {
  process.stdout.write(`${JSON.stringify({ step, ...record })}\n`);
}

export function describeError(error) {
  return {
    name: error?.name ?? error?.constructor?.name,
    className: error?.constructor?.name,
    status: error?.status,
    error: error?.error,
    message: String(error?.message ?? error),
  };
}

// Runs one step; its result (or the error the SDK threw) becomes that step's JSON line.
// Failures are reported, not thrown, so later steps still run and the test sees everything.
export async function step(name, body) {
  try {
    const result = await body();
    emit(name, { ok: true, result });
    return result;
  } catch (error) {
    emit(name, { ok: false, error: describeError(error) });
    return undefined;
  }
}

// What a test needs to see of a run the SDK parsed (dates stay Dates until JSON.stringify).
export function summarise(run) {
  return {
    ...run,
    datesAreDates: ["createdAt", "updatedAt", "startedAt", "finishedAt", "delayedUntil"]
      .filter((key) => run[key] !== undefined)
      .every((key) => run[key] instanceof Date),
  };
}

export async function retrieveUntil(runId, done, { timeoutMs = 20000, intervalMs = 50 } = {}) {
  const seen = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await runs.retrieve(runId);
    if (seen.at(-1) !== run.status) seen.push(run.status);
    if (done(run)) return { run: summarise(run), statusesSeen: seen };
    if (Date.now() > deadline) {
      throw new Error(`${runId} still ${run.status} after ${timeoutMs} ms (saw ${seen})`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export const completed = (run) => run.isCompleted;

export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
