/**
 * The maps from importance logits to mixing weights: softmax (SN), and sparsestmax (Sparse SN,
 * Shao et al., CVPR 2019), each with its vector-Jacobian product for the backward pass.
 *
 * @module
 */

/** Mixing weights, and dL/dlogits from dL/dweights. */
export interface Importance {
  readonly weights: Float64Array;
  /** dL/dlogits = J^T g for g = dL/dweights. */
  readonly vjp: (g: ArrayLike<number>) => Float64Array;
}

/** softmax(v) = exp(v) / sum exp(v); J^T g = w * (g - <w, g>). */
export function softmax(v: ArrayLike<number>): Importance {
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) max = Math.max(max, v[i]);
  const w = Float64Array.from(v, (x) => Math.exp(x - max));
  const sum = w.reduce((a, b) => a + b, 0);
  for (let i = 0; i < w.length; i++) w[i] /= sum;
  return {
    weights: w,
    vjp(g) {
      const dot = w.reduce((a, wi, i) => a + wi * g[i], 0);
      return w.map((wi, i) => wi * (g[i] - dot));
    },
  };
}

/**
 * sparsemax(v): the Euclidean projection of v onto the probability simplex,
 * w_i = max(v_i - tau, 0) with tau from the sorted values (Martins & Astudillo, 2016).
 */
export function sparsemax(v: ArrayLike<number>): Float64Array {
  const z = Array.from(v).sort((a, b) => b - a);
  let cumulative = 0, tau = 0;
  for (let k = 0; k < z.length; k++) {
    cumulative += z[k];
    const t = (cumulative - 1) / (k + 1);
    if (z[k] > t) tau = t;
  }
  return Float64Array.from(v, (x) => Math.max(x - tau, 0));
}

type Matrix = Float64Array[]; // rows

function multiply(a: Matrix, b: Matrix): Matrix {
  return a.map((row) =>
    Float64Array.from(b[0], (_, j) => row.reduce((acc, aij, i) => acc + aij * b[i][j], 0))
  );
}

/** Projection onto the hyperplane {sum_S p = const} restricted to S: I_S - 1_S 1_S^T / |S|. */
function faceProjection(support: boolean[]): Matrix {
  const size = support.filter(Boolean).length;
  return support.map((si, i) =>
    Float64Array.from(support, (sj, j) => (si && sj ? +(i === j) - 1 / size : 0))
  );
}

function uniformOn(support: boolean[]): Float64Array {
  const size = support.filter(Boolean).length;
  return Float64Array.from(support, (s) => (s ? 1 / size : 0));
}

const norm = (a: ArrayLike<number>) => Math.hypot(...Array.from(a));

/** |w - u| below this is rounding noise of equal logits, not a direction. */
const NO_DIRECTION = 1e-12;

/** d(u + r e/|e|)/de = (r/|e|)(I - e e^T/|e|^2): moving p along the sphere of radius r. */
function sphereJacobian(e: Float64Array, r: number): Matrix {
  const d = norm(e);
  return Array.from(
    e,
    (ei, i) => Float64Array.from(e, (ej, j) => (r / d) * (+(i === j) - ei * ej / (d * d))),
  );
}

/**
 * sparsestmax(v, r) of SN_SPEC: sparsemax, then, unless the result is one-hot or already at least
 * r from the uniform distribution u over its support, p = u + r (w - u)/|w - u|, re-projected on
 * a smaller face with r' = sqrt(r^2 - |u' - u|^2) while p leaves the simplex. With equal logits
 * (|w - u| = 0) there is no direction to move in, and w is returned as it is. The Jacobian is
 * carried through each stage (sparsemax's, the sphere's, the faces'), constant supports assumed
 * (true except on a measure-zero set of logits).
 */
export function sparsestmax(v: ArrayLike<number>, r: number): Importance {
  const k = v.length;
  const w = sparsemax(v);
  let support = Array.from(w, (x) => x > 0);
  let jacobian = faceProjection(support); // sparsemax's Jacobian
  const result = (weights: Float64Array, j: Matrix): Importance => ({
    weights,
    vjp: (g) =>
      Float64Array.from({ length: k }, (_, i) => j.reduce((a, row, q) => a + row[i] * g[q], 0)),
  });
  const oneHot = () => {
    const zero = Array.from({ length: k }, () => new Float64Array(k));
    return result(Float64Array.from(support, (s) => +s), zero);
  };
  if (support.filter(Boolean).length === 1) return oneHot();
  let u = uniformOn(support);
  let e = w.map((x, i) => x - u[i]);
  if (norm(e) >= r || norm(e) <= NO_DIRECTION) return result(w, jacobian);
  let radius = r;
  let p = e.map((x, i) => u[i] + radius * x / norm(e));
  jacobian = multiply(sphereJacobian(e, radius), jacobian);
  while (p.some((x) => x < 0)) {
    const inner = Array.from(p, (x) => x > 0);
    support = inner;
    if (support.filter(Boolean).length === 1) return oneHot();
    const u2 = uniformOn(support);
    radius = Math.sqrt(Math.max(radius * radius - norm(u2.map((x, i) => x - u[i])) ** 2, 0));
    // Drop the negative coordinates and move back into the face's hyperplane (sum 1).
    const face = faceProjection(support);
    const q = Float64Array.from(
      { length: k },
      (_, i) => face[i].reduce((a, fij, j) => a + fij * p[j], 0) + u2[i],
    );
    e = q.map((x, i) => x - u2[i]);
    if (norm(e) <= NO_DIRECTION) {
      return result(
        u2,
        multiply(face, jacobian).map((row) => row.fill(0)),
      );
    }
    jacobian = multiply(sphereJacobian(e, radius), multiply(face, jacobian));
    p = e.map((x, i) => u2[i] + radius * x / norm(e));
    u = u2;
  }
  return result(p.map((x) => Math.min(Math.max(x, 0), 1)), jacobian);
}
