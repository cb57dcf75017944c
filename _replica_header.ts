/**
 * What SyncSN replicas tell each other with every gather, before its payload: whether this
 * replica's call is going on or failed, which of the group's layers makes it (its place among
 * the layers made on the group: layers with the same settings sharing one group look alike
 * otherwise), which call it is (a training-mode forward, an evaluation-mode forward, a backward)
 * and every setting of its layer that shapes what the exchange computes. Replicas that differ in
 * one of them would merge statistics of different meaning (or pair a forward's statistics with
 * another call's vector, or one layer's with another's) and their running buffers would drift
 * apart with no error: every replica compares all headers, in rank order, and the
 * call fails on each of them with the same message naming the difference. Depends on nothing.
 *
 * @module
 */

/** The call a replica makes, which must be the same call on every replica. */
export type ReplicaCall = "trainingForward" | "evaluationForward" | "backward";

/** A layer's settings that must agree across the replicas of a group. */
export interface ReplicaConfig {
  /** The input rank: 2 (SwitchNorm1d), 4 (SwitchNorm2d), 5 (SwitchNorm3d). */
  readonly rank: number;
  readonly numFeatures: number;
  readonly usingBN: boolean;
  readonly eps: number;
  readonly momentum: number;
  readonly usingMovingAverage: boolean;
  readonly sparse: boolean;
  /** Sparse SN's radius (0 without `sparse`). */
  readonly radius: number;
  /** The batch average's K (0 with the moving average). */
  readonly batchesAccumulated: number;
}

/** The leading slot: this replica's call is going on, or it failed before this gather. */
export const OK = 0, FAILED = 1;

const CALLS: readonly ReplicaCall[] = ["trainingForward", "evaluationForward", "backward"];
const CALL_TEXT: Readonly<Record<ReplicaCall, string>> = {
  trainingForward: "a training-mode forward",
  evaluationForward: "an evaluation-mode forward",
  backward: "a backward",
};
const LAYER_NAMES: Readonly<Record<number, string>> = {
  2: "a SwitchNorm1d",
  4: "a SwitchNorm2d",
  5: "a SwitchNorm3d",
};

/** One compared setting: how to show its value, and what to do about a difference. */
interface Field {
  readonly key: keyof ReplicaConfig;
  /** The name in messages, when not the key. */
  readonly name?: string;
  /** State that calls change (compared after the call: another call may explain it). */
  readonly state?: true;
  readonly show: (v: number) => string;
  readonly fix: string;
}
const SAME_OPTIONS = "make every replica's layer with the same class, numFeatures and options";
const number = (v: number) => String(v);
const flag = (v: number) => String(v === 1);
const FIELDS: readonly Field[] = [
  {
    key: "rank",
    name: "layer class",
    show: (v) => LAYER_NAMES[v] ?? `rank ${v}`,
    fix: SAME_OPTIONS,
  },
  { key: "numFeatures", show: number, fix: SAME_OPTIONS },
  { key: "usingBN", show: flag, fix: SAME_OPTIONS },
  { key: "eps", show: number, fix: SAME_OPTIONS },
  { key: "momentum", show: number, fix: SAME_OPTIONS },
  { key: "usingMovingAverage", show: flag, fix: SAME_OPTIONS },
  { key: "sparse", show: flag, fix: SAME_OPTIONS },
  { key: "radius", show: number, fix: "set the same radius on every replica", state: true },
  {
    key: "batchesAccumulated",
    show: number,
    fix: "their batch averages did not start together: call resetRunningStats() on every replica",
    state: true,
  },
];

/** Slots: status, the layer's place on its group, the call, then FIELDS in order. */
const LAYER = 1, CALL = 2, SETTINGS = 3;
export const HEADER_LENGTH = SETTINGS + FIELDS.length;

/**
 * Writes this replica's header into `out[0..HEADER_LENGTH)`. `layer` is the layer's place among
 * the layers made on its group in this replica (0 for the first).
 */
export function writeHeader(
  out: Float64Array,
  status: typeof OK | typeof FAILED,
  layer: number,
  call: ReplicaCall,
  config: ReplicaConfig,
): void {
  out[0] = status;
  out[LAYER] = layer;
  out[CALL] = CALLS.indexOf(call);
  for (const [i, { key }] of FIELDS.entries()) out[SETTINGS + i] = Number(config[key]);
}

const ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"];
/** "layer 1 (the second made on it)". */
function layerText(index: number): string {
  const n = index + 1, tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : ["th", "st", "nd", "rd"][n % 10] ?? "th";
  return `layer ${index} (the ${ORDINALS[index] ?? `${n}${suffix}`} made on it)`;
}

/**
 * Throws, with the same message on every replica, if the replicas' headers (each vector's first
 * HEADER_LENGTH slots, every vector at least that long, none marked FAILED) are not the same call
 * of the same layer (its place on the group) with the same settings: the first difference from
 * replica 0, in rank order; the layer, options, then the call, then the state calls change
 * (radius, the batch average's count).
 */
export function checkHeaders(all: readonly Float64Array[]): void {
  const first = all[0], size = all.length;
  // The layer first: two different layers may well differ in their options and calls too.
  for (const [rank, v] of all.entries()) {
    if (v[LAYER] !== first[LAYER]) {
      throw new Error(
        `SyncSN: replica 0 (of ${size}) is calling the group's ${layerText(first[LAYER])} ` +
          `but replica ${rank} ${layerText(v[LAYER])}: layers that share a group must be made ` +
          "in the same order and called in the same order on every replica; this call changed " +
          "nothing",
      );
    }
  }
  const compare = (state: boolean) => {
    for (const [i, field] of FIELDS.entries()) {
      if (!!field.state !== state) continue;
      const { key, name = key, show, fix } = field;
      for (const [rank, v] of all.entries()) {
        const a = first[SETTINGS + i], b = v[SETTINGS + i];
        if (a !== b) {
          throw new Error(
            `SyncSN: the replicas' layers differ in ${name}: replica 0 (of ${size}) has ${
              show(a)
            }, replica ${rank} has ${show(b)}; ${fix}. This call changed nothing`,
          );
        }
      }
    }
  };
  // The options next: replicas whose layers differ may well make different calls because of it.
  compare(false);
  for (const [rank, v] of all.entries()) {
    if (v[CALL] !== first[CALL]) {
      const text = (code: number) => CALL_TEXT[CALLS[code]] ?? `an unknown call (${code})`;
      const ours = text(first[CALL]), theirs = text(v[CALL]);
      throw new Error(
        `SyncSN: replica 0 (of ${size}) is making ${ours} but replica ${rank} ${theirs}: ` +
          "the replicas of a group must make the same calls (forward in the same " +
          "mode, and backward) in the same order; this call changed nothing",
      );
    }
  }
  compare(true);
}
