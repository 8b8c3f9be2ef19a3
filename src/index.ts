// The public API of tsgc: `import { defineModel, interpret, … } from "tsgc"`.

// IR and the model-definition API
export { defineModel, ModelBuilder, EntryBuilder, Tensor, ropeInverseFrequencies, yarnConcentration } from "./ir/builder.js";
export type { AttentionOptions, ExpertWeight, MoeOptions, RopeOptions, Scalar, YarnScaling } from "./ir/builder.js";
export { DTYPES, dtypeBytes, roundBf16, roundF16, roundTo, decodeE2m1, decodeE8m0, E2M1_VALUES, MXFP4_BLOCK } from "./ir/dtype.js";
export type { DType } from "./ir/dtype.js";
export type { Dim, Shape, SymbolBounds, SymbolValues } from "./ir/shape.js";
export { ALL_OPS, COLLECTIVE_OPS, FUSED_OPS, PRIMITIVE_OPS, TYPE_RULES } from "./ir/ops.js";
export type { Op, OpAttrs, FusedInstr, TensorType, UnaryFn, BinaryFn, CompareFn, TernaryFn, ReduceFn } from "./ir/ops.js";
export { IRError, NodeTable, topoOrder } from "./ir/node.js";
export type { Node, NodeOf, SourceSite } from "./ir/node.js";
export { findEntry, graphNodes, entryNodes } from "./ir/graph.js";
export type { Graph, EntryPoint, EntryOutput, InputDecl, ParamDecl, ParamSlice, QuantDesc } from "./ir/graph.js";
export { verifyGraph, assertValidGraph } from "./ir/verify.js";
export { printGraph } from "./ir/print.js";
export { graphToJson, graphToJsonText, graphFromJson, graphFromJsonText } from "./ir/json.js";
export type { GraphJson } from "./ir/json.js";

// the CPU reference interpreter and host tensors
export { interpret, interpretStep, interpretRanks, evaluateNodes, bindSymbols } from "./ir/interpret.js";
export { combineCollective } from "./ir/collectives.js";
export { hostTensor, zerosTensor, randomTensor, seededRandom } from "./ir/host-tensor.js";
export type { HostTensor } from "./ir/host-tensor.js";

// models
export { gptOssModel, gptOssLayout } from "../models/gpt-oss/model.js";
export type { GptOssBuildOptions } from "../models/gpt-oss/model.js";
export { GPT_OSS_20B, GPT_OSS_120B, GPT_OSS_TINY, GPT_OSS_CONFIG_LIMITS, parseGptOssConfig, loadGptOssConfig, GptOssConfigError } from "../models/gpt-oss/config.js";
export type { GptOssConfig } from "../models/gpt-oss/config.js";
export { gptOssCheckpointTensors } from "../models/gpt-oss/checkpoint.js";
export { BUILTIN_MODELS, DEFAULT_MODEL, findBuiltinModel } from "../models/index.js";

// weights and generation
export { randomParams } from "./loader/random-params.js";
export { loadParams } from "./loader/load-params.js";

// checkpoints, quantization and the tokenizer
export { Checkpoint, openCheckpoint, writeCheckpoint, writeCheckpointTensors } from "./loader/checkpoint.js";
export { SafetensorsError, SafetensorsWriter, writeSafetensors } from "./loader/safetensors.js";
export { CheckpointMismatchError, openGptOssCheckpoint, validateGptOssCheckpoint } from "./loader/validate.js";
export { dequantizeMxfp4, quantizeMxfp4 } from "./loader/mxfp4.js";
export { quantizeCheckpoint } from "./loader/quantize-checkpoint.js";
export { writeRandomGptOssCheckpoint } from "./loader/random-checkpoint.js";
export { HARMONY_STOP_TOKENS, HARMONY_TOKENS, HarmonyTokenizer, StreamingDecoder } from "./generate/tokenizer.js";
export { chatMessages, encodeHarmony, renderHarmony } from "./generate/harmony.js";
export type { HarmonyMessage } from "./generate/harmony.js";

// the compiler
export { compile, buildPlan, graphHash } from "./compile/compile.js";
export type { CompileOptions, CompileResult, CompileStats, CompileEvent } from "./compile/compile.js";
export { runPipeline, runShardedPipeline, PIPELINE, opCounts } from "./passes/pipeline.js";
export { shardGraph, ShardError } from "./passes/shard.js";
export type { RankSet, ShardStrategy, SplitOutput } from "./passes/shard.js";
export { parsePlan, planSchema } from "./lower/plan.js";
export type { Plan } from "./lower/plan.js";
export { PlanExecutor } from "../runtime/executor.js";

// the serving engine
export { openEngine, gpuPresent } from "./engine/open.js";
export type { OpenEngineOptions, OpenedEngine, OpenProgress } from "./engine/open.js";
export { ServingEngine, logprobsOf } from "./engine/engine.js";
export type { EngineOptions } from "./engine/engine.js";
export { EngineOverloadedError, EngineRequestError } from "./engine/api.js";
export type {
  Engine, EngineModelInfo, EngineStats, FinishReason, GenerationRequest, GenerationStream, GenerationSummary, SamplingParams, TokenLogprob, TokenOutput,
} from "./engine/api.js";
export { interpreterBackend, interpreterRanksBackend, planBackend } from "./engine/backend.js";
export type { StepBackend, StepOptions, StepOutputs } from "./engine/backend.js";
export { RankGroup, RankGroupError, rankGroupBackend } from "./engine/rank-group.js";
export type { RankGroupOptions, RankInfo, RankWorkerSpec } from "./engine/rank-group.js";
export { sliceParams } from "./loader/slice-params.js";
export { STEP_ENTRY, STEP_NAMES, STEP_SYMBOLS } from "./engine/contract.js";
export type { KvGroup, PagedDecoderLayout } from "./engine/contract.js";

// the runtime: GPUs, the kernel cache, streaming a checkpoint into a plan's arena
export { Device, deviceCount, deviceInfo, listDevices } from "../runtime/cuda.js";
export type { DeviceInfo } from "../runtime/cuda.js";
export { CacheArchiveError, CacheFullError, CacheUnusableError, compileKernels, defaultCacheDir, KernelCache } from "../runtime/kernel-cache.js";
export { streamCheckpoint } from "../runtime/load-checkpoint.js";

// the OpenAI-compatible HTTP server over an engine
export { createOpenAiServer } from "./server/server.js";
export type { ListeningAddress, OpenAiServer } from "./server/server.js";
export type { ServerOptions } from "./server/options.js";
