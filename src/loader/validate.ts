// Checks a checkpoint's tensors against the list a gpt-oss config implies, reporting every difference precisely.
import { gptOssCheckpointTensors, configExpertFormat, type ExpectedTensor, type ExpertFormat } from "../../models/gpt-oss/checkpoint.js";
import { loadGptOssConfig, type GptOssConfig } from "../../models/gpt-oss/config.js";
import { openCheckpoint, type Checkpoint } from "./checkpoint.js";

export type CheckpointIssueKind = "missing" | "unexpected" | "shape" | "dtype";

export interface CheckpointIssue {
  readonly kind: CheckpointIssueKind;
  readonly tensor: string;
  readonly message: string;
}

/** What is known of a tensor in a checkpoint. */
export interface TensorDescription {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
}

const formatShape = (shape: readonly number[]): string => `[${shape.join(", ")}]`;

/** Every difference between the tensors present and the tensors expected: missing, unexpected, wrong shape or dtype. */
export function compareTensors(actual: Iterable<TensorDescription>, expected: readonly ExpectedTensor[]): CheckpointIssue[] {
  const issues: CheckpointIssue[] = [];
  const present = new Map<string, TensorDescription>();
  for (const t of actual) present.set(t.name, t);
  const wanted = new Set<string>();
  for (const e of expected) {
    wanted.add(e.name);
    const t = present.get(e.name);
    if (t === undefined) {
      issues.push({
        kind: "missing",
        tensor: e.name,
        message: `missing tensor "${e.name}" (expected ${e.dtypes.join("|")} ${formatShape(e.shape)})`,
      });
      continue;
    }
    if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
      issues.push({
        kind: "shape",
        tensor: e.name,
        message: `tensor "${e.name}" has shape ${formatShape(t.shape)} but the config needs ${formatShape(e.shape)}`,
      });
    }
    if (!e.dtypes.includes(t.dtype)) {
      issues.push({
        kind: "dtype",
        tensor: e.name,
        message: `tensor "${e.name}" has dtype ${t.dtype} but must be ${e.dtypes.length === 1 ? e.dtypes[0] : `one of ${e.dtypes.join(", ")}`}`,
      });
    }
  }
  for (const t of present.values()) {
    if (!wanted.has(t.name)) {
      issues.push({
        kind: "unexpected",
        tensor: t.name,
        message: `unexpected tensor "${t.name}" (${t.dtype} ${formatShape(t.shape)}) is not part of this config's checkpoint`,
      });
    }
  }
  return issues;
}

/** A one-paragraph summary of issues (the first `limit` in full). */
export function describeIssues(location: string, issues: readonly CheckpointIssue[], limit = 20): string {
  const lines = issues.slice(0, limit).map((i) => `  ${i.message}`);
  if (issues.length > limit) lines.push(`  … and ${issues.length - limit} more`);
  return `${location}: checkpoint does not match its config (${issues.length} problem${issues.length === 1 ? "" : "s"}):\n${lines.join("\n")}`;
}

export class CheckpointMismatchError extends Error {
  override readonly name = "CheckpointMismatchError";
  constructor(
    readonly location: string,
    readonly issues: readonly CheckpointIssue[],
  ) {
    super(describeIssues(location, issues));
  }
}

export interface ValidatedCheckpoint {
  readonly config: GptOssConfig;
  readonly format: ExpertFormat;
  readonly checkpoint: Checkpoint;
  readonly issues: readonly CheckpointIssue[];
}

/**
 * Opens `dir` (config.json + safetensors), validates every header, and compares the tensors with what the config
 * implies. Malformed files throw; a well-formed checkpoint that does not fit the config returns its issues.
 * The caller closes `checkpoint`.
 */
export async function validateGptOssCheckpoint(dir: string, config?: GptOssConfig): Promise<ValidatedCheckpoint> {
  const cfg = config ?? (await loadGptOssConfig(dir));
  const format = configExpertFormat(cfg);
  const checkpoint = await openCheckpoint(dir);
  const issues = compareTensors(checkpoint.tensors.values(), gptOssCheckpointTensors(cfg, format));
  return { config: cfg, format, checkpoint, issues };
}

/** Like validateGptOssCheckpoint, but any issue throws a CheckpointMismatchError listing them. */
export async function openGptOssCheckpoint(dir: string, config?: GptOssConfig): Promise<ValidatedCheckpoint> {
  const result = await validateGptOssCheckpoint(dir, config);
  if (result.issues.length > 0) {
    await result.checkpoint.close();
    throw new CheckpointMismatchError(dir, result.issues);
  }
  return result;
}
