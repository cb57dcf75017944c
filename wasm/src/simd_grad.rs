//! f32x4 loops of the backward over contiguous runs of floats: the per-row gradient sums over
//! (x, dy), the dx sweep, and their roofline (the same bytes moved with one add). The loads,
//! stores and horizontal sums they share, and the forward's loops, are in `simd`.

use crate::simd::{hsum, load, store, transpose_sum, Group4, TAIL_MASKS};
use core::arch::wasm32::*;

/// `(sum_i dy[i], sum_i dy[i] * (x[i] - shift))` for i < n, summed in f32 and returned as an
/// f64x2 (the per-row sums of a backward pass). With `shift` the f32 part of the row's IN mean,
/// `x - shift` is exact for x near the mean, so a large offset costs no accuracy; callers keep
/// n short and add longer rows chunk by chunk in f64, so the f32 partial sums stay short. Four
/// accumulator pairs keep the adds independent; the n % 4 tail is the masked top of the vectors
/// ending at n. Both horizontal sums share their shuffles: rows can be as short as 49 floats,
/// where the per-row fixed cost matters.
///
/// # Safety
/// `x` and `dy` must be valid for reading `n` floats.
#[inline(always)]
pub unsafe fn grad_sums(x: *const f32, dy: *const f32, n: usize, shift: f32) -> v128 {
    if n < 4 {
        let (mut g, mut p) = (0.0f32, 0.0f32);
        for i in 0..n {
            let d = *dy.add(i);
            g += d;
            p += d * (*x.add(i) - shift);
        }
        return f64x2(g as f64, p as f64);
    }
    let s = f32x4_splat(shift);
    let z = f32x4_splat(0.0);
    let (mut g0, mut g1) = (z, z);
    // sum dy of every 16 floats (four vectors added pairwise in f32, terms of at most 4 |dy|)
    // gathered in f64: f32 accumulators of a chunk's 64 terms per lane left the sum ~1e-7
    // relative off, which gm = -gamma s sum dy carries into the importance-logit gradients, small
    // differences of gm (mu_k - mu) over rows when dy has a mean (dy = 1 + 1e-3 N(0, 1) on
    // channels of means 0 and 100: `mean_weight`'s gradient 2.9x its tolerance).
    let mut gw = f64x2_splat(0.0);
    let (mut p0, mut p1, mut p2, mut p3) = (z, z, z, z);
    let mut i = 0;
    while i + 16 <= n {
        let d0 = load(dy.add(i));
        let d1 = load(dy.add(i + 4));
        let d2 = load(dy.add(i + 8));
        let d3 = load(dy.add(i + 12));
        let t = f32x4_add(f32x4_add(d0, d1), f32x4_add(d2, d3));
        gw = f64x2_add(
            gw,
            f64x2_add(
                f64x2_promote_low_f32x4(t),
                f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(t, t)),
            ),
        );
        p0 = f32x4_add(p0, f32x4_mul(d0, f32x4_sub(load(x.add(i)), s)));
        p1 = f32x4_add(p1, f32x4_mul(d1, f32x4_sub(load(x.add(i + 4)), s)));
        p2 = f32x4_add(p2, f32x4_mul(d2, f32x4_sub(load(x.add(i + 8)), s)));
        p3 = f32x4_add(p3, f32x4_mul(d3, f32x4_sub(load(x.add(i + 12)), s)));
        i += 16;
    }
    while i + 4 <= n {
        let d = load(dy.add(i));
        g0 = f32x4_add(g0, d);
        p0 = f32x4_add(p0, f32x4_mul(d, f32x4_sub(load(x.add(i)), s)));
        i += 4;
    }
    let r = n - i;
    if r > 0 {
        // Masking dy masks the product too; x's lanes below the tail are then multiplied by 0,
        // which is 0 unless they hold Inf or NaN, so those lanes are masked after the multiply.
        let mask = v128_load(TAIL_MASKS[r].as_ptr() as *const v128);
        let d = load(dy.add(n - 4));
        let p = f32x4_mul(d, f32x4_sub(load(x.add(n - 4)), s));
        g1 = f32x4_add(g1, v128_and(d, mask));
        p1 = f32x4_add(p1, v128_and(p, mask));
    }
    let g = f32x4_add(g0, g1);
    let p = f32x4_add(f32x4_add(p0, p1), f32x4_add(p2, p3));
    // [g0 + g2, g1 + g3, p0 + p2, p1 + p3], then lanes 0 and 2 hold the sums, as `hsum` pairs.
    let h = f32x4_add(i32x4_shuffle::<0, 1, 4, 5>(g, p), i32x4_shuffle::<2, 3, 6, 7>(g, p));
    let h = f32x4_add(h, i32x4_shuffle::<1, 0, 3, 2>(h, h));
    let sums = f64x2_promote_low_f32x4(i32x4_shuffle::<0, 2, 0, 2>(h, h));
    // The 16-float blocks' dy sums (f64 lanes) added to lane 0.
    let gw = f64x2_add(gw, i64x2_shuffle::<1, 0>(gw, gw));
    f64x2_add(sums, f64x2_replace_lane::<1>(gw, 0.0))
}

/// `grad_sums` of four rows of n floats at once (4 <= n), row k at `x[k]`, `dy[k]` around lane k
/// of `shift` (f32x4): one accumulator pair per row (callers keep n <= 64, so at most 16 terms
/// per lane, as `grad_sums` over a chunk), the four rows' adds interleaved and their horizontal
/// sums done by one transpose. Returns (g, p) as f32x4 with row k's sums in lane k; each row's
/// sums depend on that row alone.
///
/// # Safety
/// Each `x[k]`, `dy[k]` must be valid for reading `n` floats, 4 <= n.
#[inline(always)]
pub unsafe fn grad_sums_x4(
    x: [*const f32; 4],
    dy: [*const f32; 4],
    n: usize,
    shift: v128,
) -> (v128, v128) {
    let s0 = i32x4_shuffle::<0, 0, 0, 0>(shift, shift);
    let s1 = i32x4_shuffle::<1, 1, 1, 1>(shift, shift);
    let s2 = i32x4_shuffle::<2, 2, 2, 2>(shift, shift);
    let s3 = i32x4_shuffle::<3, 3, 3, 3>(shift, shift);
    let z = f32x4_splat(0.0);
    let (mut g0, mut g1, mut g2, mut g3) = (z, z, z, z);
    let (mut p0, mut p1, mut p2, mut p3) = (z, z, z, z);
    let mut i = 0;
    while i + 4 <= n {
        let d0 = load(dy[0].add(i));
        let d1 = load(dy[1].add(i));
        let d2 = load(dy[2].add(i));
        let d3 = load(dy[3].add(i));
        g0 = f32x4_add(g0, d0);
        g1 = f32x4_add(g1, d1);
        g2 = f32x4_add(g2, d2);
        g3 = f32x4_add(g3, d3);
        p0 = f32x4_add(p0, f32x4_mul(d0, f32x4_sub(load(x[0].add(i)), s0)));
        p1 = f32x4_add(p1, f32x4_mul(d1, f32x4_sub(load(x[1].add(i)), s1)));
        p2 = f32x4_add(p2, f32x4_mul(d2, f32x4_sub(load(x[2].add(i)), s2)));
        p3 = f32x4_add(p3, f32x4_mul(d3, f32x4_sub(load(x[3].add(i)), s3)));
        i += 4;
    }
    let r = n - i;
    if r > 0 {
        // As in `grad_sums`: the products are masked after the multiply, so that Inf or NaN in
        // x's lanes below the tail does not leak in.
        let mask = v128_load(TAIL_MASKS[r & 3].as_ptr() as *const v128);
        let t = n - 4;
        let (d0, d1) = (load(dy[0].add(t)), load(dy[1].add(t)));
        let (d2, d3) = (load(dy[2].add(t)), load(dy[3].add(t)));
        g0 = f32x4_add(g0, v128_and(d0, mask));
        g1 = f32x4_add(g1, v128_and(d1, mask));
        g2 = f32x4_add(g2, v128_and(d2, mask));
        g3 = f32x4_add(g3, v128_and(d3, mask));
        let e0 = f32x4_mul(d0, f32x4_sub(load(x[0].add(t)), s0));
        let e1 = f32x4_mul(d1, f32x4_sub(load(x[1].add(t)), s1));
        let e2 = f32x4_mul(d2, f32x4_sub(load(x[2].add(t)), s2));
        let e3 = f32x4_mul(d3, f32x4_sub(load(x[3].add(t)), s3));
        p0 = f32x4_add(p0, v128_and(e0, mask));
        p1 = f32x4_add(p1, v128_and(e1, mask));
        p2 = f32x4_add(p2, v128_and(e2, mask));
        p3 = f32x4_add(p3, v128_and(e3, mask));
    }
    (transpose_sum(g0, g1, g2, g3), transpose_sum(p0, p1, p2, p3))
}

/// `dx[i] = dy[i] * a + (x[i] - shift) * b + k` for i < n with `abk` = f32 [shift, a, b, k]:
/// the dx sweep of a backward pass over one row, with its per-row constants (see
/// `nd_grad_dx::dx`). `dx` may be the same pointer as `dy` or `x` (in place); it must not overlap
/// them otherwise. As in `normalize`, the n % 4 tail is the vector ending at n, loaded before any
/// store and stored last.
///
/// # Safety
/// `x` and `dy` must be valid for reading and `dx` for writing `n` floats.
#[inline(always)]
pub unsafe fn grad_dx(x: *const f32, dy: *const f32, dx: *mut f32, n: usize, abk: v128) {
    let sv = i32x4_shuffle::<0, 0, 0, 0>(abk, abk);
    let av = i32x4_shuffle::<1, 1, 1, 1>(abk, abk);
    let bv = i32x4_shuffle::<2, 2, 2, 2>(abk, abk);
    let kv = i32x4_shuffle::<3, 3, 3, 3>(abk, abk);
    let f = |x: v128, d: v128| {
        f32x4_add(f32x4_add(f32x4_mul(d, av), f32x4_mul(f32x4_sub(x, sv), bv)), kv)
    };
    if n < 4 {
        for i in 0..n {
            let v = f(f32x4_splat(*x.add(i)), f32x4_splat(*dy.add(i)));
            *dx.add(i) = f32x4_extract_lane::<0>(v);
        }
        return;
    }
    let (tx, td) = (load(x.add(n - 4)), load(dy.add(n - 4)));
    let mut i = 0;
    while i + 8 <= n {
        let (x0, d0) = (load(x.add(i)), load(dy.add(i)));
        let (x1, d1) = (load(x.add(i + 4)), load(dy.add(i + 4)));
        store(dx.add(i), f(x0, d0));
        store(dx.add(i + 4), f(x1, d1));
        i += 8;
    }
    if i + 4 <= n {
        store(dx.add(i), f(load(x.add(i)), load(dy.add(i))));
    }
    store(dx.add(n - 4), f(tx, td));
}

/// `grad_dx` of four consecutive rows of m floats at once (m >= 4), row k with the constants
/// `abk[k]`, walking their run of 4m floats one vector at a time as `normalize_x4` does: a
/// vector across rows k and k + 1 uses each row's constants in that row's lanes. Every float
/// gets the same operations as in `grad_dx`, so the results are the same bit for bit. `dx` may
/// be the same pointer as `dy` or `x`.
///
/// # Safety
/// `x`, `dy` must be valid for reading and `dx` for writing 4m floats (`g` from
/// `Group4::new(m)`), `dx` the same as an input or overlapping neither; `abk` valid for four
/// v128.
#[inline(always)]
pub unsafe fn grad_dx_x4(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    g: &Group4,
    abk: *const v128,
) {
    let splat4 = |c: v128| {
        (
            i32x4_shuffle::<0, 0, 0, 0>(c, c),
            i32x4_shuffle::<1, 1, 1, 1>(c, c),
            i32x4_shuffle::<2, 2, 2, 2>(c, c),
            i32x4_shuffle::<3, 3, 3, 3>(c, c),
        )
    };
    let f = |x: v128, d: v128, (sv, av, bv, kv): (v128, v128, v128, v128)| {
        f32x4_add(f32x4_add(f32x4_mul(d, av), f32x4_mul(f32x4_sub(x, sv), bv)), kv)
    };
    let mut cur = splat4(*abk);
    let mut i = 0;
    for k in 0..4 {
        let end = g.ends[k];
        while i + 8 <= end {
            let (x0, d0) = (load(x.add(i)), load(dy.add(i)));
            let (x1, d1) = (load(x.add(i + 4)), load(dy.add(i + 4)));
            store(dx.add(i), f(x0, d0, cur));
            store(dx.add(i + 4), f(x1, d1, cur));
            i += 8;
        }
        if i < end {
            store(dx.add(i), f(load(x.add(i)), load(dy.add(i)), cur));
            i += 4;
        }
        if k < 3 {
            let next = splat4(*abk.add(k + 1));
            if g.split[k] {
                let lo = g.lo[k];
                let sel = |a: v128, b: v128| v128_bitselect(a, b, lo);
                let c = (
                    sel(cur.0, next.0),
                    sel(cur.1, next.1),
                    sel(cur.2, next.2),
                    sel(cur.3, next.3),
                );
                store(dx.add(i), f(load(x.add(i)), load(dy.add(i)), c));
                i += 4;
            }
            cur = next;
        }
    }
}

/// `sum_i (x[i] + y[i])` for i < n, reading both arrays once in one loop (the roofline of the
/// backward reduction).
///
/// # Safety
/// `x` and `y` must be valid for reading `n` floats.
#[inline(always)]
pub unsafe fn sum_pair(x: *const f32, y: *const f32, n: usize) -> f32 {
    let z = f32x4_splat(0.0);
    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
    let mut i = 0;
    while i + 8 <= n {
        a0 = f32x4_add(a0, load(x.add(i)));
        a1 = f32x4_add(a1, load(x.add(i + 4)));
        a2 = f32x4_add(a2, load(y.add(i)));
        a3 = f32x4_add(a3, load(y.add(i + 4)));
        i += 8;
    }
    let mut s = hsum(f32x4_add(f32x4_add(a0, a1), f32x4_add(a2, a3)));
    while i < n {
        s += *x.add(i) + *y.add(i);
        i += 1;
    }
    s
}

/// `out[i] = x[i] + y[i]` for i < n: the data movement of the dx sweep with one add.
///
/// # Safety
/// `x`, `y` must be valid for reading and `out` for writing `n` floats; `out` may equal either
/// input but must not partially overlap them.
#[inline(always)]
pub unsafe fn add(x: *const f32, y: *const f32, out: *mut f32, n: usize) {
    let mut i = 0;
    while i + 8 <= n {
        let v0 = f32x4_add(load(x.add(i)), load(y.add(i)));
        let v1 = f32x4_add(load(x.add(i + 4)), load(y.add(i + 4)));
        store(out.add(i), v0);
        store(out.add(i + 4), v1);
        i += 8;
    }
    while i < n {
        *out.add(i) = *x.add(i) + *y.add(i);
        i += 1;
    }
}
