/**
 * The demo's own tiny layers: plain TypeScript on Float32Array, forward and backward, NCHW.
 * Not part of the library's API (mod.ts does not export them); tests/demo_layers_test.ts checks
 * their backward passes against finite differences.
 *
 * @module
 */

/** A layer with trainable parameters and their gradients (accumulated by backward). */
export interface Trainable {
  /** [parameter, its gradient, a name] triples, the live arrays. */
  params(): [Float32Array, Float32Array, string][];
}

/** A 3x3 convolution, stride 1, zero padding 1 (same size out), with bias. */
export class Conv3x3 implements Trainable {
  /** [outC, inC, 3, 3]. */
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly gradWeight: Float32Array;
  readonly gradBias: Float32Array;
  #x: Float32Array = new Float32Array(0);
  #shape = [0, 0, 0];

  constructor(readonly inC: number, readonly outC: number, random: () => number) {
    this.weight = new Float32Array(outC * inC * 9);
    const std = Math.sqrt(2 / (inC * 9)); // He initialisation
    for (let i = 0; i < this.weight.length; i++) this.weight[i] = std * gaussian(random);
    this.bias = new Float32Array(outC);
    this.gradWeight = new Float32Array(this.weight.length);
    this.gradBias = new Float32Array(outC);
  }

  params(): [Float32Array, Float32Array, string][] {
    return [[this.weight, this.gradWeight, "weight"], [this.bias, this.gradBias, "bias"]];
  }

  /** x: [n, inC, h, w] -> [n, outC, h, w]. Keeps x (by reference) for backward. */
  forward(x: Float32Array, n: number, h: number, w: number): Float32Array {
    const { inC, outC, weight, bias } = this;
    const m = h * w;
    const y = new Float32Array(n * outC * m);
    for (let s = 0; s < n; s++) {
      for (let o = 0; o < outC; o++) {
        const yo = (s * outC + o) * m;
        y.fill(bias[o], yo, yo + m);
        for (let i = 0; i < inC; i++) {
          const xi = (s * inC + i) * m, wo = (o * inC + i) * 9;
          for (let ky = 0; ky < 3; ky++) {
            const dy = ky - 1;
            const r0 = Math.max(0, -dy), r1 = Math.min(h, h - dy);
            for (let kx = 0; kx < 3; kx++) {
              const dx = kx - 1, wv = weight[wo + ky * 3 + kx];
              const c0 = Math.max(0, -dx), c1 = Math.min(w, w - dx);
              for (let r = r0; r < r1; r++) {
                const yr = yo + r * w, xr = xi + (r + dy) * w + dx;
                for (let c = c0; c < c1; c++) y[yr + c] += wv * x[xr + c];
              }
            }
          }
        }
      }
    }
    this.#x = x;
    this.#shape = [n, h, w];
    return y;
  }

  /** dy: [n, outC, h, w] -> dx: [n, inC, h, w]; adds into gradWeight and gradBias. */
  backward(dy: Float32Array): Float32Array {
    const { inC, outC, weight, gradWeight, gradBias } = this;
    const x = this.#x, [n, h, w] = this.#shape;
    const m = h * w;
    const dx = new Float32Array(n * inC * m);
    for (let s = 0; s < n; s++) {
      for (let o = 0; o < outC; o++) {
        const yo = (s * outC + o) * m;
        let sum = 0;
        for (let j = 0; j < m; j++) sum += dy[yo + j];
        gradBias[o] += sum;
        for (let i = 0; i < inC; i++) {
          const xi = (s * inC + i) * m, wo = (o * inC + i) * 9;
          for (let ky = 0; ky < 3; ky++) {
            const ddy = ky - 1;
            const r0 = Math.max(0, -ddy), r1 = Math.min(h, h - ddy);
            for (let kx = 0; kx < 3; kx++) {
              const ddx = kx - 1, wv = weight[wo + ky * 3 + kx];
              const c0 = Math.max(0, -ddx), c1 = Math.min(w, w - ddx);
              let g = 0;
              for (let r = r0; r < r1; r++) {
                const yr = yo + r * w, xr = xi + (r + ddy) * w + ddx;
                for (let c = c0; c < c1; c++) {
                  const d = dy[yr + c];
                  g += d * x[xr + c];
                  dx[xr + c] += wv * d;
                }
              }
              gradWeight[wo + ky * 3 + kx] += g;
            }
          }
        }
      }
    }
    return dx;
  }
}

/** A fully connected layer: [n, inF] -> [n, outF]. */
export class Linear implements Trainable {
  /** [outF, inF]. */
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly gradWeight: Float32Array;
  readonly gradBias: Float32Array;
  #x: Float32Array = new Float32Array(0);
  #n = 0;

  constructor(readonly inF: number, readonly outF: number, random: () => number, gain = 2) {
    this.weight = new Float32Array(outF * inF);
    const std = Math.sqrt(gain / inF);
    for (let i = 0; i < this.weight.length; i++) this.weight[i] = std * gaussian(random);
    this.bias = new Float32Array(outF);
    this.gradWeight = new Float32Array(this.weight.length);
    this.gradBias = new Float32Array(outF);
  }

  params(): [Float32Array, Float32Array, string][] {
    return [[this.weight, this.gradWeight, "weight"], [this.bias, this.gradBias, "bias"]];
  }

  forward(x: Float32Array, n: number): Float32Array {
    const { inF, outF, weight, bias } = this;
    const y = new Float32Array(n * outF);
    for (let s = 0; s < n; s++) {
      for (let o = 0; o < outF; o++) {
        let sum = bias[o];
        for (let i = 0; i < inF; i++) sum += weight[o * inF + i] * x[s * inF + i];
        y[s * outF + o] = sum;
      }
    }
    this.#x = x;
    this.#n = n;
    return y;
  }

  backward(dy: Float32Array): Float32Array {
    const { inF, outF, weight, gradWeight, gradBias } = this;
    const x = this.#x, n = this.#n;
    const dx = new Float32Array(n * inF);
    for (let s = 0; s < n; s++) {
      for (let o = 0; o < outF; o++) {
        const d = dy[s * outF + o];
        gradBias[o] += d;
        for (let i = 0; i < inF; i++) {
          gradWeight[o * inF + i] += d * x[s * inF + i];
          dx[s * inF + i] += d * weight[o * inF + i];
        }
      }
    }
    return dx;
  }
}

/** max(0, x), elementwise. */
export class ReLU {
  #y: Float32Array = new Float32Array(0);

  forward(x: Float32Array): Float32Array {
    const y = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) y[i] = x[i] > 0 ? x[i] : 0;
    this.#y = y;
    return y;
  }

  backward(dy: Float32Array): Float32Array {
    const y = this.#y, dx = new Float32Array(dy.length);
    for (let i = 0; i < dy.length; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
    return dx;
  }
}

/** 2x2 average pooling, stride 2: [n, c, h, w] -> [n, c, h/2, w/2] (h and w even). */
export class AvgPool2x2 {
  #shape = [0, 0, 0, 0];

  forward(x: Float32Array, n: number, c: number, h: number, w: number): Float32Array {
    const ho = h >> 1, wo = w >> 1;
    const y = new Float32Array(n * c * ho * wo);
    for (let p = 0; p < n * c; p++) {
      for (let r = 0; r < ho; r++) {
        for (let q = 0; q < wo; q++) {
          const i = p * h * w + 2 * r * w + 2 * q;
          y[(p * ho + r) * wo + q] = 0.25 * (x[i] + x[i + 1] + x[i + w] + x[i + w + 1]);
        }
      }
    }
    this.#shape = [n, c, h, w];
    return y;
  }

  backward(dy: Float32Array): Float32Array {
    const [n, c, h, w] = this.#shape, ho = h >> 1, wo = w >> 1;
    const dx = new Float32Array(n * c * h * w);
    for (let p = 0; p < n * c; p++) {
      for (let r = 0; r < ho; r++) {
        for (let q = 0; q < wo; q++) {
          const d = 0.25 * dy[(p * ho + r) * wo + q], i = p * h * w + 2 * r * w + 2 * q;
          dx[i] =
            dx[i + 1] =
            dx[i + w] =
            dx[i + w + 1] =
              d;
        }
      }
    }
    return dx;
  }
}

/** Global average pooling: [n, c, m] -> [n, c]. */
export class GlobalAvgPool {
  #m = 0;

  forward(x: Float32Array, n: number, c: number, m: number): Float32Array {
    const y = new Float32Array(n * c);
    for (let p = 0; p < n * c; p++) {
      let sum = 0;
      for (let j = 0; j < m; j++) sum += x[p * m + j];
      y[p] = sum / m;
    }
    this.#m = m;
    return y;
  }

  backward(dy: Float32Array): Float32Array {
    const m = this.#m, dx = new Float32Array(dy.length * m);
    for (let p = 0; p < dy.length; p++) dx.fill(dy[p] / m, p * m, (p + 1) * m);
    return dx;
  }
}

/**
 * Mean softmax cross-entropy of logits [n, k] against integer labels; also the gradient of that
 * mean with respect to the logits and the number of correct arg-max predictions.
 */
export function softmaxCrossEntropy(
  logits: Float32Array,
  labels: ArrayLike<number>,
  n: number,
  k: number,
): { loss: number; dlogits: Float32Array; correct: number } {
  const dlogits = new Float32Array(n * k);
  let loss = 0, correct = 0;
  for (let s = 0; s < n; s++) {
    let max = -Infinity, arg = 0;
    for (let j = 0; j < k; j++) {
      if (logits[s * k + j] > max) [max, arg] = [logits[s * k + j], j];
    }
    let z = 0;
    for (let j = 0; j < k; j++) z += Math.exp(logits[s * k + j] - max);
    const label = labels[s];
    loss += Math.log(z) - (logits[s * k + label] - max);
    for (let j = 0; j < k; j++) {
      dlogits[s * k + j] = (Math.exp(logits[s * k + j] - max) / z - (j === label ? 1 : 0)) / n;
    }
    if (arg === label) correct++;
  }
  return { loss: loss / n, dlogits, correct };
}

/** A standard normal sample from a uniform [0, 1) source (Box-Muller). */
export function gaussian(random: () => number): number {
  const u = 1 - random(), v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}
