//! The exact sum of a run of floats, rounded once to f64: for means that cancel below what an f64
//! sum resolves. An f64 sum of float32 data is off by ~2^-53 of the data's size (its partial sums
//! round), so a mean that cancels to 2^-56 of its std (pairs +-v and a pair of small elements)
//! comes out as that rounding, where the float64 reference, summing in its own order, forms it
//! exactly. Every finite float32 is an integer multiple of 2^-149 below 2^128, so the sum is held
//! as a fixed-point integer over that range (a superaccumulator) and rounded to f64 at the end:
//! the correctly rounded sum, whatever the order. Scalar (a dozen integer operations per float):
//! callers take it only for rows whose f64 mean already lies far below their std (a gate no
//! ordinary data meets), never on the hot path.

/// 32-bit digits of the accumulator, from 2^-149 up: float32's 24-bit significands start at bit
/// 0..=253, so a term reaches bit 277; the last digit takes the carries of up to 2^43 terms.
const DIGITS: usize = 10;

/// Terms between carry propagations: each digit gains less than 2^32 in magnitude per term, so
/// its i64 holds 2^30 terms with room to spare.
const FLUSH: usize = 1 << 30;

/// The exact sum of `n` floats `stride` apart from `x`, rounded once to the nearest f64 (ties to
/// even), +0 for an exact 0; NaN if some element is infinite or NaN.
///
/// # Safety
/// `x` must be valid for reading elements 0, stride, ..., (n - 1) * stride.
pub unsafe fn sum_f32(x: *const f32, n: usize, stride: usize) -> f64 {
    let mut digit = [0i64; DIGITS];
    let mut done = 0;
    while done < n {
        let end = if n - done > FLUSH { done + FLUSH } else { n };
        for i in done..end {
            let bits = (*x.add(i * stride)).to_bits();
            let biased = (bits >> 23) & 0xff;
            if biased == 0xff {
                return f64::NAN;
            }
            let frac = (bits & 0x7f_ffff) as i64;
            // value = significand * 2^(at - 149); subnormals (biased 0) share normals' lowest unit.
            let (significand, at) =
                if biased == 0 { (frac, 0) } else { (frac | 0x80_0000, biased as usize - 1) };
            let mut v = significand << (at & 31);
            if bits >> 31 != 0 {
                v = -v;
            }
            // v = hi 2^32 + lo with 0 <= lo < 2^32 (arithmetic shift), |hi| < 2^23.
            let k = at >> 5;
            digit[k] += v & 0xffff_ffff;
            digit[k + 1] += v >> 32;
        }
        carry(&mut digit);
        done = end;
    }
    let negative = digit[DIGITS - 1] < 0;
    if negative {
        digit.iter_mut().for_each(|d| *d = -*d);
        carry(&mut digit);
    }
    let magnitude = round_digits(&digit);
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// Digits 0..DIGITS-1 into [0, 2^32), the carries moved up (the value is unchanged; the last digit
/// keeps the sign).
fn carry(digit: &mut [i64; DIGITS]) {
    for k in 0..DIGITS - 1 {
        let up = digit[k] >> 32;
        digit[k] -= up << 32;
        digit[k + 1] += up;
    }
}

/// sum_k digit[k] 2^(32k - 149) of nonnegative digits below 2^32, rounded once to f64: the top 64
/// bits with every bit below them folded into the lowest (a sticky bit, far below the rounding
/// position) convert in one correctly rounded u64 -> f64, then scale by an exact power of 2.
fn round_digits(digit: &[i64; DIGITS]) -> f64 {
    let top = match digit.iter().rposition(|&d| d != 0) {
        Some(t) => t,
        None => return 0.0,
    };
    let at = |k: usize| if top >= k { digit[top - k] as u128 } else { 0 };
    // The top three digits (96 bits, the first nonzero), shifted so that the leading 1 is bit 127.
    let three = (at(0) << 64) | (at(1) << 32) | at(2);
    let lead = three.leading_zeros();
    let wide = three << lead;
    let below = top >= 3 && digit[..top - 2].iter().any(|&d| d != 0);
    let head = (wide >> 64) as u64 | ((wide as u64 != 0) || below) as u64;
    // three's bit 0 is worth 2^(32 (top - 2) - 149), wide's 2^-lead of that, head's 2^64 of
    // wide's: 2^(32 top - 149 - lead), within [-212, 107] (lead is 32..=63).
    let exponent = 32 * top as i64 - 149 - lead as i64;
    head as f64 * f64::from_bits(((exponent + 1023) as u64) << 52)
}
