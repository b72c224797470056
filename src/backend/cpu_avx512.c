/* AVX-512 kernels of the CPU backend, chosen at run time (dl4c_cpu_avx512_usable) in place of
 * the portable ones of cpu.c; DL4C_CPU_KERNELS=generic in the environment keeps the portable
 * ones. Everything here is compiled for AVX-512 by function attributes and only called after
 * the check, so the library still runs on any x86-64 (and under valgrind, whose CPU has none).
 *
 * Products: one register-blocked microkernel, C[mr x 32] (mr <= 12) from A[k][mr] broadcasts
 * and B[k][32] rows, with the bias, the activation and the store to NCHW done on the registers
 * (the epilogue). Every element of C is one sequential chain of fused multiply-adds over k, so
 * no result depends on blocking, on the number of threads or on which thread ran a tile.
 *   dense:        y = act(x W + b); dW = x^T dz; dx = dz W^T (W packed transposed)
 *   conv forward: per group of images, im2col [K][q] into per-thread scratch (L2-sized), then
 *                 y[o][q] = act(W[o][:] col[:][q] + b[o]) stored straight into NCHW
 *   conv dW:      small W (out*K <= DOT_MAX_W): per group of images, dW partial = dz col^T as
 *                 dot products over q (16 lanes), groups added in order; larger W: dz^T [q][out]
 *                 and col^T [q][K] of the batch, then dW = one chain over q per element
 *   conv dx:      per group of images, dcol^T[q][K] = dz^T W, then added into dx window by window
 * Elementwise ops keep the portable ops' exact operations (no contraction into FMA: see the
 * pragmas below), so they give the same floats. */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "backend/cpu_internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define INLINE static inline __attribute__((always_inline))

bool dl4c_cpu_avx512_usable(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
}

#define LEAKY_ALPHA 0.01f   /* as cpu.c */
#define MR_MAX 12           /* rows of the microkernel */
#define DOT_MAX_W 2048      /* conv dW by dot products up to this many weights */

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }
static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Lanes [0, n) of a 16-lane mask (n may be <= 0 or >= 16). */
static __mmask16 lanes(int n) { return n <= 0 ? 0 : n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* Epilogue activations done on the registers. */
enum { EPI_NONE, EPI_RELU, EPI_LEAKY };
static int epi_act(dl4c_activation a) {
    return a == DL4C_RELU ? EPI_RELU : a == DL4C_LEAKYRELU ? EPI_LEAKY : EPI_NONE;
}

/* ---- the microkernel ----
 * acc[i][lane] = sum_k a[k*acs + i] * b[k*ldb + lane] for i < MR, lanes < 32 (masks m0, m1),
 * starting from C when accum (continuing its chain) else from 0; then (times scale, when an
 * operand was scaled up: see ukr2) + bias_row[i], + bias_col[lane], the activation, and the
 * masked store of row i, lanes 0-15 at c0 + i*ldc and lanes 16-31 at c1 + i*ldc. */
typedef struct ukr_epi {
    float *c0, *c1;              /* where row 0's two halves go */
    int64_t ldc;                 /* row stride of C */
    __mmask16 m0, m1;            /* valid lanes of each half */
    bool accum;                  /* start from C instead of 0 */
    const float *bias_row;       /* NULL or one per row */
    const float *bias_col;       /* NULL or one per lane */
    int act;                     /* EPI_* */
    uint16_t *mask0, *mask1;     /* NULL, or row i's y > 0 bits of each half go to mask0/1[i*mask_ld] */
    int64_t mask_ld;
} ukr_epi;

AVX512 INLINE __m512 epi_act_apply(__m512 v, int act) {
    if (act == EPI_RELU)   /* x < 0 ? 0 : x (NaN and -0 pass, as the portable loop) */
        return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v, _mm512_setzero_ps());
    if (act == EPI_LEAKY)
        return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v,
                                    _mm512_mul_ps(_mm512_set1_ps(LEAKY_ALPHA), v));
    return v;
}

/* v * scale (a power of two) rounded as the float multiply rounds it, without the multiply's
 * ~100-cycle microcode assist where the product is subnormal: those lanes are rounded to the
 * grid of subnormals (multiples of 2^-149) as integers, which is the same rounding. */
AVX512 INLINE __m512 scale_down(__m512 v, float scale) {
    const __m512 av = _mm512_abs_ps(v);
    const __mmask16 small = _mm512_cmp_ps_mask(av, _mm512_set1_ps(FLT_MIN / scale), _CMP_LT_OQ);
    if (!small) return _mm512_mul_ps(v, _mm512_set1_ps(scale));
    const __m512i m = _mm512_maskz_cvtps_epi32(small, _mm512_maskz_mul_ps(small, av, _mm512_set1_ps(scale * 0x1p64f * 0x1p85f)));
    const __m512i sub = _mm512_or_si512(m, _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)));
    return _mm512_mask_mul_ps(_mm512_castsi512_ps(sub), (__mmask16)~small, v, _mm512_set1_ps(scale));
}

/* acc (times scale unless 0) + bias_row (when has_r) + bias_col (when has_c), in that order. A
 * scaled sum takes its first bias in an FMA: the same float as the multiply then the add where
 * the product is normal (a product by a power of two is then exact), without an assist where
 * it is not. */
AVX512 INLINE __m512 epi_sum(__m512 v, float scale, bool has_r, __m512 br, bool has_c, __m512 bc) {
    if (scale != 0) {
        if (has_r) { v = _mm512_fmadd_ps(v, _mm512_set1_ps(scale), br); has_r = false; }
        else if (has_c) { v = _mm512_fmadd_ps(v, _mm512_set1_ps(scale), bc); has_c = false; }
        else v = scale_down(v, scale);
    }
    if (has_r) v = _mm512_add_ps(v, br);
    if (has_c) v = _mm512_add_ps(v, bc);
    return v;
}

/* The k loop of a scaled tile runs with flush-to-zero on: a scaled product or sum below FLT_MIN
 * stands for a value below 2^-158, which the unscaled float computation rounds to zero (or to
 * one subnormal step) too, and produces it without a microcode assist. The epilogue (scaling
 * down, bias) runs with the caller's MXCSR again. */
#define MXCSR_FTZ 0x8000u
AVX512 INLINE unsigned ftz_begin(float scale) {
    if (scale == 0) return 0;
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | MXCSR_FTZ);
    return csr;
}
/* The caller's control bits back, keeping the exception flags the loop raised. */
AVX512 INLINE void ftz_end(unsigned csr) { _mm_setcsr((_mm_getcsr() & 0x3fu) | (csr & ~0x3fu)); }
#define FTZ_FENCE(v) __asm__ volatile("" : "+v"(v))

AVX512 INLINE bool ukr32_body(const int MR, int kc, const float *a, int64_t acs, const float *b,
                              int64_t ldb, const ukr_epi *e, float scale) {
    __m512 c0[MR_MAX], c1[MR_MAX];
    const __mmask16 m0 = e->m0, m1 = e->m1;
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (e->accum) {
            c0[i] = _mm512_maskz_loadu_ps(m0, e->c0 + i * e->ldc);
            c1[i] = _mm512_maskz_loadu_ps(m1, e->c1 + i * e->ldc);
        } else {
            c0[i] = _mm512_setzero_ps();
            c1[i] = _mm512_setzero_ps();
        }
    }
    /* full panels take plain loads of B (masked ones cost a few % of the loop here) */
#define UKR32_K_LOOP(load0, load1)                                                         \
    for (int k = 0; k < kc; k++) {                                                         \
        const __m512 b0 = load0, b1 = load1;                                               \
        _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++) {                            \
            const __m512 av = _mm512_set1_ps(a[i]);                                        \
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);                                        \
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);                                        \
        }                                                                                  \
        a += acs;                                                                          \
        b += ldb;                                                                          \
    }
    const unsigned csr = ftz_begin(scale);
    if (scale != 0) {
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) { FTZ_FENCE(c0[i]); FTZ_FENCE(c1[i]); }
    }
    if ((m0 & m1) == 0xffff) UKR32_K_LOOP(_mm512_loadu_ps(b), _mm512_loadu_ps(b + 16))
    else UKR32_K_LOOP(_mm512_maskz_loadu_ps(m0, b), _mm512_maskz_loadu_ps(m1, b + 16))
#undef UKR32_K_LOOP
    if (scale != 0) {
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) { FTZ_FENCE(c0[i]); FTZ_FENCE(c1[i]); }
        ftz_end(csr);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) { FTZ_FENCE(c0[i]); FTZ_FENCE(c1[i]); }
    }
    if (scale != 0) {   /* a sum that overflowed scaled: the caller redoes it unscaled */
        __mmask16 bad = 0;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++)
            bad |= _mm512_mask_fpclass_ps_mask(m0, c0[i], 0x99) | _mm512_mask_fpclass_ps_mask(m1, c1[i], 0x99);
        if (bad) return false;
    }
    __m512 bc0 = _mm512_setzero_ps(), bc1 = _mm512_setzero_ps();
    if (e->bias_col) {
        bc0 = _mm512_maskz_loadu_ps(m0, e->bias_col);
        bc1 = _mm512_maskz_loadu_ps(m1, e->bias_col + 16);
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        const __m512 br = e->bias_row ? _mm512_set1_ps(e->bias_row[i]) : _mm512_setzero_ps();
        __m512 v0 = epi_sum(c0[i], scale, e->bias_row, br, e->bias_col, bc0);
        __m512 v1 = epi_sum(c1[i], scale, e->bias_row, br, e->bias_col, bc1);
        v0 = epi_act_apply(v0, e->act);
        v1 = epi_act_apply(v1, e->act);
        _mm512_mask_storeu_ps(e->c0 + i * e->ldc, m0, v0);
        _mm512_mask_storeu_ps(e->c1 + i * e->ldc, m1, v1);
        if (e->mask0) {
            e->mask0[i * e->mask_ld] = _mm512_mask_cmp_ps_mask(m0, v0, _mm512_setzero_ps(), _CMP_GT_OQ);
            if (m1) e->mask1[i * e->mask_ld] = _mm512_mask_cmp_ps_mask(m1, v1, _mm512_setzero_ps(), _CMP_GT_OQ);
        }
    }
    return true;
}

/* The same for one half (lanes 0-15 only). */
AVX512 INLINE bool ukr16_body(const int MR, int kc, const float *a, int64_t acs, const float *b,
                              int64_t ldb, const ukr_epi *e, float scale) {
    __m512 c0[MR_MAX];
    const __mmask16 m0 = e->m0;
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++)
        c0[i] = e->accum ? _mm512_maskz_loadu_ps(m0, e->c0 + i * e->ldc) : _mm512_setzero_ps();
    const unsigned csr = ftz_begin(scale);
    if (scale != 0) {
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) FTZ_FENCE(c0[i]);
    }
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) c0[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), b0, c0[i]);
        a += acs;
        b += ldb;
    }
    if (scale != 0) {
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) FTZ_FENCE(c0[i]);
        ftz_end(csr);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) FTZ_FENCE(c0[i]);
    }
    if (scale != 0) {
        __mmask16 bad = 0;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) bad |= _mm512_mask_fpclass_ps_mask(m0, c0[i], 0x99);
        if (bad) return false;
    }
    const __m512 bc0 = e->bias_col ? _mm512_maskz_loadu_ps(m0, e->bias_col) : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        const __m512 br = e->bias_row ? _mm512_set1_ps(e->bias_row[i]) : _mm512_setzero_ps();
        __m512 v0 = epi_sum(c0[i], scale, e->bias_row, br, e->bias_col, bc0);
        v0 = epi_act_apply(v0, e->act);
        _mm512_mask_storeu_ps(e->c0 + i * e->ldc, m0, v0);
        if (e->mask0) e->mask0[i * e->mask_ld] = _mm512_mask_cmp_ps_mask(m0, v0, _mm512_setzero_ps(), _CMP_GT_OQ);
    }
    return true;
}

#define UKR_CASES(body)                                                                          \
    switch (mr) {                                                                                \
    case 1: return body(1, kc, a, acs, b, ldb, e, scale);   case 2: return body(2, kc, a, acs, b, ldb, e, scale);   \
    case 3: return body(3, kc, a, acs, b, ldb, e, scale);   case 4: return body(4, kc, a, acs, b, ldb, e, scale);   \
    case 5: return body(5, kc, a, acs, b, ldb, e, scale);   case 6: return body(6, kc, a, acs, b, ldb, e, scale);   \
    case 7: return body(7, kc, a, acs, b, ldb, e, scale);   case 8: return body(8, kc, a, acs, b, ldb, e, scale);   \
    case 9: return body(9, kc, a, acs, b, ldb, e, scale);   case 10: return body(10, kc, a, acs, b, ldb, e, scale); \
    case 11: return body(11, kc, a, acs, b, ldb, e, scale); case 12: return body(12, kc, a, acs, b, ldb, e, scale); \
    default: DL4C_ASSERT(!"microkernel rows out of range"); return false;                        \
    }

/* One tile: mr rows (1..12), up to 32 lanes (e->m0, e->m1). False (nothing stored) when
 * scale is set and a sum is not finite. */
AVX512 __attribute__((noinline)) static bool ukr_raw(int mr, int kc, const float *a, int64_t acs,
                                                     const float *b, int64_t ldb, const ukr_epi *e, float scale) {
    if (e->m1) { UKR_CASES(ukr32_body) }
    else { UKR_CASES(ukr16_body) }
}

/* ---- subnormal weights ----
 * Weights that stop getting a data gradient decay under l2 into subnormal floats, and every
 * multiply or FMA with a subnormal input or output takes a ~100-cycle microcode assist on x86.
 * An operand with entries below 2^-100 is therefore multiplied by 2^32 (exactly, on the bits)
 * and the sums by 2^-32 in the epilogue: each product is then exactly 2^32 times the float
 * product, so the result is the float computation's whenever that one stays at or above
 * FLT_MIN, and carries more precision than it when it does not. A tile whose scaled sums are
 * not finite is computed again unscaled. Products of two small entries can underflow even
 * scaled (LeNet's output layer: softmax probabilities near 1e-40 in dL/dz times decayed
 * weights); the scaled k loop therefore runs with flush-to-zero on (ftz_begin, above). */
#define SHIFT 32
#define SHIFT_DOWN 0x1p-32f

/* One operand of a product: as given, and scaled by 2^SHIFT (NULL when not scaled). */
typedef struct operand {
    const float *p, *scaled;
    int64_t ld;                  /* 0, or the row stride of p where it differs from the scaled copy's */
} operand;

/* A tile with operands that may be scaled: the scaled ones first, unscaled if that fails (or
 * when the sums continue from C, which is not scaled). */
AVX512 static void ukr2(int mr, int kc, operand a, int64_t acs, operand b, int64_t ldb, const ukr_epi *e) {
    if ((a.scaled || b.scaled) && !e->accum) {
        const float scale = a.scaled && b.scaled ? SHIFT_DOWN * SHIFT_DOWN : SHIFT_DOWN;
        /* B's scaled copy is a panel (row stride ldb); B itself may be read in place (b.ld) */
        if (ukr_raw(mr, kc, a.scaled ? a.scaled : a.p, acs, b.scaled ? b.scaled : b.p,
                    b.scaled || !b.ld ? ldb : b.ld, e, scale))
            return;
    }
    ukr_raw(mr, kc, a.p, acs, b.p, b.ld ? b.ld : ldb, e, 0);
}

AVX512 static void ukr(int mr, int kc, const float *a, int64_t acs, const float *b, int64_t ldb, const ukr_epi *e) {
    ukr_raw(mr, kc, a, acs, b, ldb, e, 0);
}

/* The scan of an operand for tiny entries (nonzero, below 2^-100: worth scaling) and big ones
 * (at or above 2^60, infinities, NaN: scaling would not be exact), on the bits of |v| as
 * unsigned integers: the running minimum of |v| - 1 (zeros wrap to the top, so they are not
 * tiny) and maximum of |v|. Three integer operations per vector, no masks: lanes loaded as zero
 * change neither. */
typedef struct scan_acc { __m512i mn, mx; } scan_acc;

AVX512 INLINE scan_acc scan_new(void) { return (scan_acc){_mm512_set1_epi32(-1), _mm512_setzero_si512()}; }

/* Adds v's lanes to the scan; returns |v|'s bits. */
AVX512 INLINE __m512i scan_add(scan_acc *sc, __m512i v) {
    const __m512i a = _mm512_and_si512(v, _mm512_set1_epi32(0x7fffffff));
    sc->mn = _mm512_min_epu32(sc->mn, _mm512_sub_epi32(a, _mm512_set1_epi32(1)));
    sc->mx = _mm512_max_epu32(sc->mx, a);
    return a;
}

/* Whether the scanned values have a tiny entry and no big one: scaling pays and is exact. */
AVX512 INLINE bool scan_wants_scaled(scan_acc sc) {
    return _mm512_cmplt_epu32_mask(sc.mn, _mm512_set1_epi32(0x0d800000 - 1)) &&
           !_mm512_cmpge_epu32_mask(sc.mx, _mm512_set1_epi32(0x5d800000));
}

/* Whether rows x cols (row stride ld) have a tiny entry and no big one. */
AVX512 static bool want_scaled(const float *a, int64_t rows, int64_t cols, int64_t ld) {
    scan_acc sc = scan_new();
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c += 16)
            scan_add(&sc, _mm512_maskz_loadu_epi32(lanes((int)(cols - c < 16 ? cols - c : 16)), a + r * ld + c));
    return scan_wants_scaled(sc);
}

/* v * 2^SHIFT exactly (a = |v|'s bits, from scan_add), without floating-point work on subnormal
 * inputs: a normal number gets SHIFT added to its exponent; a subnormal or zero is its mantissa
 * (a itself) converted and times 2^(SHIFT - 149), one subnormal step scaled, a product of
 * normal numbers (the lanes of normal numbers compute a discarded one, also normal); then the
 * sign of v. */
AVX512 INLINE __m512i scale_abs(__m512i v, __m512i a) {
    const __mmask16 normal = _mm512_test_epi32_mask(v, _mm512_set1_epi32(0x7f800000));
    const __m512i small = _mm512_castps_si512(_mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_set1_ps(0x1p-117f)));
    const __m512i r = _mm512_mask_add_epi32(small, normal, a, _mm512_set1_epi32(SHIFT << 23));
    return _mm512_ternarylogic_epi32(r, v, _mm512_set1_epi32((int)0x80000000u), 0xf8);   /* r | (v & sign) */
}

AVX512 INLINE __m512i scale_vec(__m512i v) {
    return scale_abs(v, _mm512_and_si512(v, _mm512_set1_epi32(0x7fffffff)));
}

/* dst = src * 2^SHIFT exactly. */
AVX512 static void scale_up(const float *src, int64_t rows, int64_t cols, int64_t lds, float *dst, int64_t ldd) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c += 16) {
            const __mmask16 m = lanes((int)(cols - c < 16 ? cols - c : 16));
            _mm512_mask_storeu_epi32(dst + r * ldd + c, m, scale_vec(_mm512_maskz_loadu_epi32(m, src + r * lds + c)));
        }
}

/* The operand rows x cols at p (row stride ld), with a scaled copy in arena `slot` (same
 * layout) when it has tiny entries. */
AVX512 static operand operand_of(const float *p, int64_t rows, int64_t cols, int64_t ld, int slot) {
    operand o = {.p = p};
    if (rows <= 0 || cols <= 0 || !want_scaled(p, rows, cols, ld)) return o;
    float *q = dl4c_cpu_arena(slot, (rows - 1) * ld + cols);
    DL4C_ASSERT(q);
    scale_up(p, rows, cols, ld, q, ld);
    o.scaled = q;
    return o;
}

static operand operand_at(operand o, int64_t off) {
    return (operand){.p = o.p + off, .scaled = o.scaled ? o.scaled + off : NULL, .ld = o.ld};
}

/* Rows per block when m rows are cut into ceil(m / MR_MAX) blocks of nearly equal size. */
static int mr_of(int m) { const int nb = (int)cdiv(m, MR_MAX); return (int)cdiv(m, nb); }


/* Column j of a transposed block (at off; its lanes outside rm are zero): to dst, and when dsts,
 * scanned (scan_add) and scaled to dsts (scale_abs). */
AVX512 INLINE void t16_store(float *dst, float *dsts, int64_t off, __mmask16 rm, __m512 v, scan_acc *sc) {
    _mm512_mask_storeu_ps(dst + off, rm, v);
    if (dsts) {
        const __m512i vi = _mm512_castps_si512(v);
        _mm512_mask_storeu_epi32(dsts + off, rm, scale_abs(vi, scan_add(sc, vi)));
    }
}

/* ---- 16x16 transposes (masked at the edges) ----
 * dst[j*ldd + i] = src[i*lds + j] for i < rows, j < cols (rows, cols <= 16); and the same scaled
 * into dsts (with the scan) when dsts. */
AVX512 INLINE void transpose16_to(const float *src, int64_t lds, float *dst, int64_t ldd, int rows, int cols,
                                  float *dsts, scan_acc *sc) {
    __m512 r[16];
    const __mmask16 cm = lanes(cols);
    for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_maskz_loadu_ps(cm, src + i * lds) : _mm512_setzero_ps();
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* r[4q + s] now holds, in 128-bit lane L, the elements (row 4L'.., col) ... combine lanes: */
    for (int q = 0; q < 4; q++)
        for (int s = 0; s < 4; s++) t[4 * q + s] = r[4 * q + s];
    /* Each t[4q+s] has in 128-bit block L the 4 values of rows 4q..4q+3 at column 4L+s. */
    const __mmask16 rm = lanes(rows);
    for (int s = 0; s < 4; s++) {
        const __m512 a0 = _mm512_shuffle_f32x4(t[s], t[4 + s], 0x44);       /* q0 L0,L1 | q1 L0,L1 */
        const __m512 a1 = _mm512_shuffle_f32x4(t[s], t[4 + s], 0xee);       /* q0 L2,L3 | q1 L2,L3 */
        const __m512 b0 = _mm512_shuffle_f32x4(t[8 + s], t[12 + s], 0x44);
        const __m512 b1 = _mm512_shuffle_f32x4(t[8 + s], t[12 + s], 0xee);
        const __m512 c0 = _mm512_shuffle_f32x4(a0, b0, 0x88);   /* L0 of q0..q3: column s */
        const __m512 c1 = _mm512_shuffle_f32x4(a0, b0, 0xdd);   /* L1: column 4 + s */
        const __m512 c2 = _mm512_shuffle_f32x4(a1, b1, 0x88);   /* L2: column 8 + s */
        const __m512 c3 = _mm512_shuffle_f32x4(a1, b1, 0xdd);   /* L3: column 12 + s */
        if (s < cols) t16_store(dst, dsts, (int64_t)s * ldd, rm, c0, sc);
        if (4 + s < cols) t16_store(dst, dsts, (int64_t)(4 + s) * ldd, rm, c1, sc);
        if (8 + s < cols) t16_store(dst, dsts, (int64_t)(8 + s) * ldd, rm, c2, sc);
        if (12 + s < cols) t16_store(dst, dsts, (int64_t)(12 + s) * ldd, rm, c3, sc);
    }
}

AVX512 static void transpose16(const float *src, int64_t lds, float *dst, int64_t ldd, int rows, int cols) {
    transpose16_to(src, lds, dst, ldd, rows, cols, NULL, NULL);
}

/* dst[j*ldd + i] = src[i*lds + j] for i < rows, j < cols. */
AVX512 static void transpose(const float *src, int64_t lds, float *dst, int64_t ldd, int rows, int cols) {
    for (int i0 = 0; i0 < rows; i0 += 16)
        for (int j0 = 0; j0 < cols; j0 += 16)
            transpose16(src + (int64_t)i0 * lds + j0, lds, dst + (int64_t)j0 * ldd + i0, ldd,
                        imin(16, rows - i0), imin(16, cols - j0));
}

/* ---- general products: C = op(A) op(B) (+ C), bias by column, activation ---- */
typedef struct gemm_job {
    int m, n, k;
    operand a; int64_t a_cs;             /* op(A)[i][kk] = a[kk*a_cs + i] (direct) */
    bool packed;                         /* or a holds packed row blocks */
    const float *b; int64_t ldb;         /* op(B)[kk][j] = b[kk*ldb + j] */
    bool b_panels;                       /* or b holds panels [n/32][k][32] */
    bool b_trans;                        /* or b is B^T [n][ldb]: each panel transposed when used */
    float *c; int64_t ldc;
    bool accum;
    const float *bias_col;
    int act;
    int mr, n_mb;                        /* rows per block, blocks */
    int panels_per_task, n_panels;
    int mb_per_task;                     /* row blocks per task */
    /* a small product on several threads: one task per thread, task t taking row blocks
     * [bound[t], bound[t+1]) and all panels (by_rows), or panels [bound[t], bound[t+1]) and
     * all row blocks, and packing its part of A itself (raw_a, raw_lda) */
    int bound[DL4C_CPU_MAX_THREADS + 1];
    bool small, by_rows;
    bool split_last;                     /* small, by panels: the last panel (partial) is split
                                          * by row blocks over the tasks, the others by bound */
    int tasks;
    const float *raw_a; int64_t raw_lda;
    int64_t a_row0;                      /* packed A starts at this row */
} gemm_job;


/* The B panel of columns [j0, j0 + 32) as a contiguous [k][32] operand, scanned for tiny values,
 * with a scaled copy (operand.scaled) when it has some. A strided B is read once, its rows
 * prefetched ahead (rows ldb apart leave each load waiting on its lines otherwise) into the
 * scaled copy, and the unscaled operand is B in place (rows up to 4 KiB apart spanning up to 256 KiB, else a copy too:
 * farther rows defeat the prefetcher and the TLB; the copy is reused by every row block). */
AVX512 static operand b_panel(const gemm_job *j, int p) {
    const int k = j->k, j0 = p * 32, nn = j->n - j0;
    const __mmask16 m0 = lanes(nn), m1 = lanes(nn - 16);
    scan_acc sc = scan_new();
    operand o = {0};
    float *ps = dl4c_cpu_arena(6, (int64_t)k * 32);
    DL4C_ASSERT(ps);
    if (j->b_trans) {   /* B^T rows [j0, j0 + nn) into a [k][32] panel that stays in L1, scaled too */
        float *pk = dl4c_cpu_arena(5, (int64_t)k * 32);
        DL4C_ASSERT(pk);
        for (int r0 = 0; r0 < imin(32, nn); r0 += 16)
            for (int k0 = 0; k0 < k; k0 += 16)
                transpose16_to(j->b + (int64_t)(j0 + r0) * j->ldb + k0, j->ldb, pk + (int64_t)k0 * 32 + r0, 32,
                               imin(16, nn - r0), imin(16, k - k0), ps + (int64_t)k0 * 32 + r0, &sc);
        o.p = pk;
    } else if (j->b_panels) {
        const float *src = j->b + (int64_t)p * k * 32;
        for (int kk = 0; kk < k; kk++) {
            scan_add(&sc, _mm512_maskz_loadu_epi32(m0, src + kk * 32));
            scan_add(&sc, _mm512_maskz_loadu_epi32(m1, src + kk * 32 + 16));
        }
        o.p = src;
        if (scan_wants_scaled(sc)) scale_up(o.p, k, 32, 32, ps, 32);
    } else {
        /* In place only when the panel's rows span at most 256 KiB: a wider span (MLP layers,
         * 784 x 1000) re-read by every row block thrashes the caches (inference -12%). */
        const bool in_place = j->ldb <= 1024 && (int64_t)k * j->ldb <= 65536;
        float *pk = in_place ? NULL : dl4c_cpu_arena(5, (int64_t)k * 32);
        DL4C_ASSERT(in_place || pk);
        const float *src = j->b + j0;
        for (int kk = 0; kk < k; kk++, src += j->ldb) {
            if (kk + 8 < k) {
                _mm_prefetch((const char *)(src + 8 * j->ldb), _MM_HINT_T0);
                _mm_prefetch((const char *)(src + 8 * j->ldb + 16), _MM_HINT_T0);
            }
            const __m512i v0 = _mm512_maskz_loadu_epi32(m0, src), v1 = _mm512_maskz_loadu_epi32(m1, src + 16);
            _mm512_store_si512(ps + kk * 32, scale_abs(v0, scan_add(&sc, v0)));
            _mm512_store_si512(ps + kk * 32 + 16, scale_abs(v1, scan_add(&sc, v1)));
            if (pk) {
                _mm512_store_si512(pk + kk * 32, v0);
                _mm512_store_si512(pk + kk * 32 + 16, v1);
            }
        }
        o.p = pk ? pk : j->b + j0;
        o.ld = pk ? 0 : j->ldb;
    }
    o.scaled = scan_wants_scaled(sc) ? ps : NULL;
    return o;
}

#define KC 256   /* depth of the k slices of large products */
#define SMALL_PRODUCT (1 << 21)   /* multiply-adds up to which a product is split one task per thread */

/* A's row blocks [b_lo, b_hi) packed for the microkernel, from row r0 = b_lo*mr on:
 * p[(i0 - r0)*k + kk*mr + i] = A[(i0+i)*lda + kk] (the job's a_row0 is r0). */
AVX512 static operand pack_a(const gemm_job *j, const float *a, int64_t lda, int b_lo, int b_hi) {
    const int64_t r0 = (int64_t)b_lo * j->mr, r1 = imin(j->m, b_hi * j->mr);
    float *p = dl4c_cpu_arena(1, (r1 - r0) * j->k);
    DL4C_ASSERT(p);
    for (int bi = b_lo; bi < b_hi; bi++) {
        const int i0 = bi * j->mr, mr = imin(j->mr, j->m - i0);
        transpose(a + (int64_t)i0 * lda, lda, p + (i0 - r0) * j->k, mr, mr, j->k);
    }
    return operand_of(p, 1, (r1 - r0) * j->k, (r1 - r0) * j->k, 3);
}

/* Panel p of C, row blocks [b_lo, b_hi). */
AVX512 static void gemm_panel(const gemm_job *j, int p, int b_lo, int b_hi) {
    const int j0 = p * 32, nn = j->n - j0;
    const operand b = b_panel(j, p);
    const int64_t ldb = b.ld ? b.ld : 32;   /* of b.p */
    if (!b.scaled && !j->a.scaled && j->k > KC + KC / 4) {
        /* k in slices of KC: the panel's slice stays in L1 across the row blocks; each sum
         * continues from C between slices (the same chain of FMAs, the same floats), and
         * the epilogue (bias, activation) runs after the last slice. */
        for (int k0 = 0; k0 < j->k; k0 += KC) {
            const int kc = imin(KC, j->k - k0);
            const bool last = k0 + kc == j->k;
            for (int bi = b_lo; bi < b_hi; bi++) {
                const int i0 = bi * j->mr, mr = imin(j->mr, j->m - i0);
                ukr_epi e = {.c0 = j->c + (int64_t)i0 * j->ldc + j0, .ldc = j->ldc, .m0 = lanes(nn),
                             .m1 = lanes(nn - 16), .accum = k0 > 0 || j->accum,
                             .bias_col = last && j->bias_col ? j->bias_col + j0 : NULL,
                             .act = last ? j->act : EPI_NONE};
                e.c1 = e.c0 + 16;
                const int64_t acs = j->packed ? mr : j->a_cs;
                const float *a = j->a.p + (j->packed ? (i0 - j->a_row0) * j->k : i0) + (int64_t)k0 * acs;
                ukr(mr, kc, a, acs, b.p + (int64_t)k0 * ldb, ldb, &e);
            }
        }
        return;
    }
    for (int bi = b_lo; bi < b_hi; bi++) {
        const int i0 = bi * j->mr, mr = imin(j->mr, j->m - i0);
        ukr_epi e = {.c0 = j->c + (int64_t)i0 * j->ldc + j0, .ldc = j->ldc, .m0 = lanes(nn),
                     .m1 = lanes(nn - 16), .accum = j->accum,
                     .bias_col = j->bias_col ? j->bias_col + j0 : NULL, .act = j->act};
        e.c1 = e.c0 + 16;
        const operand a = operand_at(j->a, j->packed ? (i0 - j->a_row0) * j->k : i0);
        const int64_t acs = j->packed ? mr : j->a_cs;
        ukr2(mr, j->k, a, acs, b, 32, &e);
    }
}

AVX512 static void gemm_task(void *ctx, int task) {
    const gemm_job *j = ctx;
    const int n_mgroups = (int)cdiv(j->n_mb, j->mb_per_task);
    const int pg = task / n_mgroups, mg = task % n_mgroups;
    int p_lo = pg * j->panels_per_task, p_hi = imin(j->n_panels, p_lo + j->panels_per_task);
    int b_lo = mg * j->mb_per_task, b_hi = imin(j->n_mb, b_lo + j->mb_per_task);
    int l_lo = 0, l_hi = 0;              /* row blocks of a split last panel (split_last) */
    gemm_job local;
    if (j->small) {   /* this task's rows or panels, and its A packed here (not read from another core) */
        p_lo = j->by_rows ? 0 : j->bound[task];
        p_hi = j->by_rows ? j->n_panels : j->bound[task + 1];
        b_lo = j->by_rows ? j->bound[task] : 0;
        b_hi = j->by_rows ? j->bound[task + 1] : j->n_mb;
        if (j->split_last) {
            l_lo = (int)((int64_t)j->n_mb * task / j->tasks);
            l_hi = (int)((int64_t)j->n_mb * (task + 1) / j->tasks);
        }
        if (b_lo >= b_hi || (p_lo >= p_hi && l_lo >= l_hi)) return;
        if (j->raw_a) {
            local = *j;
            local.a = pack_a(j, j->raw_a, j->raw_lda, b_lo, b_hi);
            local.a_row0 = (int64_t)b_lo * j->mr;
            j = &local;
        }
    }
    for (int p = p_lo; p < p_hi; p++) gemm_panel(j, p, b_lo, b_hi);
    if (l_lo < l_hi) gemm_panel(j, j->n_panels - 1, l_lo, l_hi);
}

/* op(B) = B^T: B [n][k] transposed into panels [n/32][k][32], 16 rows of B per block. */
typedef struct tpack_job { const float *src; int64_t lds; float *dst; int n, k, blocks_per_task; } tpack_job;

AVX512 static void tpack_task(void *ctx, int task) {
    const tpack_job *t = ctx;
    for (int blk = task * t->blocks_per_task; blk < imin((int)cdiv(t->n, 16), (task + 1) * t->blocks_per_task); blk++) {
        const int i0 = blk * 16;
        float *panel = t->dst + (int64_t)(i0 / 32) * t->k * 32 + i0 % 32;
        for (int k0 = 0; k0 < t->k; k0 += 16)
            transpose16(t->src + (int64_t)i0 * t->lds + k0, t->lds, panel + (int64_t)k0 * 32, 32,
                        imin(16, t->n - i0), imin(16, t->k - k0));
    }
}

/* C[m,n] = op(A) op(B) (+ C when accum: the sums continue from C), + bias_col[j], act.
 * op(A)[i][k] = ta ? A[k*lda + i] : A[i*lda + k]; op(B)[k][j] = tb ? B[j*ldb + k] : B[k*ldb + j]. */
AVX512 static void gemm_run(bool ta, bool tb, int m, int n, int k, const float *a, int64_t lda,
                            const float *b, int64_t ldb, bool accum, float *c, int64_t ldc,
                            const float *bias_col, int act) {
    if (m <= 0 || n <= 0) return;
    gemm_job j = {.m = m, .n = n, .k = k, .c = c, .ldc = ldc, .accum = accum, .bias_col = bias_col, .act = act};
    j.mr = mr_of(m);
    j.n_mb = (int)cdiv(m, j.mr);
    if (ta) {
        j.a = operand_of(a, k, m, lda, 3);
        j.a_cs = lda;
    } else {   /* row blocks packed [block][k][mr] (pack_a, below or by each task of a small product) */
        j.packed = true;
    }
    j.n_panels = (int)cdiv(n, 32);
    const int T = dl4c_cpu_threads();
    /* A small product (LeNet's dense layer: 32 x 200 x 200) on several threads: one task per
     * thread, each a run of row blocks or of panels of about equal size, packing its part of A
     * itself. Tasks of one panel each (below, for large products) leave the caller packing A
     * alone first, the other cores reading it from its cache and the tasks' columns of C
     * sharing lines: on LeNet's dense layer at 2 threads that measured no faster than one
     * thread (forward 24.5 / 22.8 us, dW 20 / 21, dx 27 / 30 us), this 15.5 / 14.5 / 19 us. */
    j.small = T > 1 && (int64_t)m * n * k >= 65536 && (int64_t)m * n * k <= SMALL_PRODUCT &&
              (j.n_mb >= T || j.n_panels >= T);
    if (j.small) {
        /* rows (each task then prepares every B panel) when there are at least as many rows
         * as columns, else panels (each task packs all of A) */
        j.by_rows = j.n_mb >= T && (m >= n || j.n_panels < T);
        /* by panels with a partial last panel (LeNet's 200 columns: 6 x 32 + 8): that panel's
         * row blocks are shared out, so that one task does not take it whole (the 8 columns
         * cost ~80% of a full panel: 96 / 104 columns measured 20.7k / 26.1k cycles) */
        j.split_last = !j.by_rows && n % 32 != 0 && j.n_mb >= T && j.n_panels > T;
        j.tasks = T;
        const int units = j.by_rows ? j.n_mb : j.split_last ? j.n_panels - 1 : j.n_panels;
        const int64_t size = j.by_rows ? m : j.split_last ? (int64_t)units * 32 : n, unit = j.by_rows ? j.mr : 32;
        j.bound[0] = 0;
        for (int t = 0, u = 0; t < T; t++) {   /* the unit boundary nearest to size*(t+1)/T */
            const int64_t want = size * (t + 1) / T;
            while (u < units && u * unit + (imin(unit, size - u * unit) + 1) / 2 <= want) u++;
            j.bound[t + 1] = t + 1 == T ? units : u;
        }
        if (!ta) {
            j.raw_a = a;
            j.raw_lda = lda;
        }
    } else if (!ta) {
        j.a = pack_a(&j, a, lda, 0, j.n_mb);
    }
    /* Other tasks: all panels (B reused across the row blocks) on one thread or below 64k
     * multiply-adds; else groups of panels, or single tiles when there are few panels. */
    j.panels_per_task = j.n_panels;
    j.mb_per_task = j.n_mb;
    if (T > 1 && (int64_t)m * n * k >= 65536 && !j.small) {
        if (j.n_panels >= 2 * T) j.panels_per_task = (int)cdiv(j.n_panels, 4 * T);
        else { j.panels_per_task = 1; j.mb_per_task = 1; }
    }
    j.b = b;
    j.ldb = ldb;
    if (tb && j.mb_per_task == j.n_mb) {
        j.b_trans = true;   /* each panel transposed once, by the task that uses it */
    } else if (tb) {   /* tasks share panels: all of B^T transposed first */
        float *p = dl4c_cpu_arena(2, (int64_t)j.n_panels * 32 * k);
        DL4C_ASSERT(p);
        tpack_job t = {.src = b, .lds = ldb, .dst = p, .n = n, .k = k};
        t.blocks_per_task = imax(1, (int)cdiv(cdiv(n, 16), 2 * T));
        if ((int64_t)n * k < 32768) t.blocks_per_task = (int)cdiv(n, 16);
        dl4c_cpu_parallel((int)cdiv(cdiv(n, 16), t.blocks_per_task), tpack_task, &t);
        j.b = p;
        j.b_panels = true;
    }
    const int tasks = j.small ? T : (int)(cdiv(j.n_panels, j.panels_per_task) * cdiv(j.n_mb, j.mb_per_task));
    DL4C_ASSERT(!j.small || T <= DL4C_CPU_MAX_THREADS);
    dl4c_cpu_parallel(tasks, gemm_task, &j);
}

/* ---- row gathers for im2col and pooling ----
 * dst[t] = src[ix0 + t*sw] when 0 <= ix0 + t*sw < w, else fill, for t < n. A plan per
 * (ix0, sw, w, n) holds the masks, so rows of one window column cost a few instructions. */
#define GATHER_MAX_GROUPS 8   /* rows up to 128 outputs take the planned path */
typedef struct gather_plan {
    int groups;
    int sw;
    int off[GATHER_MAX_GROUPS];              /* first input of each group of 16 outputs */
    __mmask16 lo[GATHER_MAX_GROUPS], hi[GATHER_MAX_GROUPS];   /* valid inputs (sw == 2: two loads) */
    __mmask16 st[GATHER_MAX_GROUPS];         /* outputs of the group */
    __mmask16 vo[GATHER_MAX_GROUPS];         /* outputs whose input is inside the row (sw > 2) */
    int ix0, w, n;
} gather_plan;

static bool gather_plan_make(gather_plan *p, int ix0, int sw, int w, int n) {
    p->groups = (int)cdiv(n, 16);
    p->sw = sw;
    p->ix0 = ix0; p->w = w; p->n = n;
    if (p->groups > GATHER_MAX_GROUPS) return false;
    for (int g = 0; g < p->groups; g++) {
        const int t0 = g * 16, cnt = imin(16, n - t0), s = ix0 + t0 * sw;
        p->off[g] = s;
        p->st[g] = lanes(cnt);
        __mmask16 lo = 0, hi = 0, vo = 0;
        for (int l = 0; l < 16; l++) {
            if (s + l >= 0 && s + l < w) lo |= (__mmask16)(1u << l);
            if (s + 16 + l >= 0 && s + 16 + l < w) hi |= (__mmask16)(1u << l);
            const int ix = s + l * sw;
            if (l < cnt && ix >= 0 && ix < w) vo |= (__mmask16)(1u << l);
        }
        p->lo[g] = lo; p->hi[g] = hi; p->vo[g] = vo;
    }
    return true;
}

/* The 16 outputs of group g (lanes past the row's end are unspecified), fill where outside. */
AVX512 INLINE __m512 gather_group(const gather_plan *p, int g, const float *src, __m512 fill) {
    const float *s = src + p->off[g];
    if (p->sw == 1) return _mm512_mask_loadu_ps(fill, p->lo[g], s);
    if (p->sw == 2) {
        const __m512i idx = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        const __m512 a = _mm512_mask_loadu_ps(fill, p->lo[g], s), b = _mm512_mask_loadu_ps(fill, p->hi[g], s + 16);
        return _mm512_permutex2var_ps(a, idx, b);
    }
    const __m512i vidx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32(p->sw));
    return _mm512_mask_i32gather_ps(fill, p->vo[g], vidx, s, 4);
}

/* ---- im2col [K][ld]: row (c,i,j), column b*P + oy*ow + ox, for images [b0, b0 + nb) ---- */

/* Strided windows or short rows: 16 output positions at a time, one gather per (c, i, j). */
AVX512 static void im2col_gather(const dl4c_window *g, const float *x, int b0, int nb, float *col, int64_t ld) {
    const int64_t P = (int64_t)g->oh * g->ow, HW = (int64_t)g->h * g->w, CKK = (int64_t)g->kh * g->kw;
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int64_t p0 = 0; p0 < P; p0 += 16) {
        const int cnt = (int)(P - p0 < 16 ? P - p0 : 16);
        int yo[16], xo[16];
        for (int l = 0; l < 16; l++) {
            const int64_t p = p0 + (l < cnt ? l : 0);
            yo[l] = (int)(p / g->ow) * g->sh - g->pt;
            xo[l] = (int)(p % g->ow) * g->sw - g->pl;
        }
        const __m512i vy = _mm512_loadu_si512(yo), vx = _mm512_loadu_si512(xo);
        const __mmask16 in = _mm512_cmplt_epi32_mask(lane, _mm512_set1_epi32(cnt));
        for (int i = 0; i < g->kh; i++) {
            const __m512i iy = _mm512_add_epi32(vy, _mm512_set1_epi32(i));
            const __mmask16 my = in & _mm512_cmpge_epi32_mask(iy, _mm512_setzero_si512()) &
                                 _mm512_cmplt_epi32_mask(iy, _mm512_set1_epi32(g->h));
            for (int j = 0; j < g->kw; j++) {
                const __m512i ix = _mm512_add_epi32(vx, _mm512_set1_epi32(j));
                const __mmask16 mv = my & _mm512_cmpge_epi32_mask(ix, _mm512_setzero_si512()) &
                                     _mm512_cmplt_epi32_mask(ix, _mm512_set1_epi32(g->w));
                const __m512i idx = _mm512_add_epi32(_mm512_mullo_epi32(iy, _mm512_set1_epi32(g->w)), ix);
                for (int bl = 0; bl < nb; bl++) {
                    const float *xb = x + (int64_t)(b0 + bl) * g->c * HW;
                    float *dst = col + (i * g->kw + j) * ld + bl * P + p0;
                    for (int c = 0; c < g->c; c++, xb += HW, dst += CKK * ld)
                        _mm512_mask_storeu_ps(dst, in, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mv, idx, xb, 4));
                }
            }
        }
    }
}

/* Stride 1 along rows of up to 32 outputs: two masked copies per output row, masks hoisted. */
AVX512 static void im2col_s1(const dl4c_window *g, const float *x, int b0, int nb, float *col, int64_t ld) {
    const int64_t P = (int64_t)g->oh * g->ow, HW = (int64_t)g->h * g->w;
    for (int j = 0; j < g->kw; j++) {
        const int ix0 = j - g->pl;   /* output ox reads input ix0 + ox */
        __mmask16 lm0 = 0, lm1 = 0;
        for (int l = 0; l < 16; l++) {
            if (l < g->ow && ix0 + l >= 0 && ix0 + l < g->w) lm0 |= (__mmask16)(1u << l);
            if (16 + l < g->ow && ix0 + 16 + l >= 0 && ix0 + 16 + l < g->w) lm1 |= (__mmask16)(1u << l);
        }
        const __mmask16 sm0 = lanes(g->ow), sm1 = lanes(g->ow - 16);
        for (int c = 0; c < g->c; c++)
            for (int i = 0; i < g->kh; i++) {
                float *row = col + ((int64_t)(c * g->kh + i) * g->kw + j) * ld;
                for (int bl = 0; bl < nb; bl++) {
                    const float *xc = x + ((int64_t)(b0 + bl) * g->c + c) * HW + ix0;
                    float *o = row + bl * P;
                    for (int oy = 0; oy < g->oh; oy++, o += g->ow) {
                        const int iy = oy * g->sh - g->pt + i;
                        if (iy < 0 || iy >= g->h) {
                            _mm512_mask_storeu_ps(o, sm0, _mm512_setzero_ps());
                            _mm512_mask_storeu_ps(o + 16, sm1, _mm512_setzero_ps());
                            continue;
                        }
                        const float *xr = xc + (int64_t)iy * g->w;
                        _mm512_mask_storeu_ps(o, sm0, _mm512_maskz_loadu_ps(lm0, xr));
                        if (sm1) _mm512_mask_storeu_ps(o + 16, sm1, _mm512_maskz_loadu_ps(lm1, xr + 16));
                    }
                }
            }
    }
}

AVX512 static void im2col_rows(const dl4c_window *g, const float *x, int b0, int nb, float *col, int64_t ld) {
    const int64_t P = (int64_t)g->oh * g->ow, HW = (int64_t)g->h * g->w;
    if (g->sw > 1 && HW < ((int64_t)1 << 30)) { im2col_gather(g, x, b0, nb, col, ld); return; }
    if (g->sw == 1 && g->ow <= 32) { im2col_s1(g, x, b0, nb, col, ld); return; }
    for (int j = 0; j < g->kw; j++) {
        gather_plan plan;
        const bool planned = gather_plan_make(&plan, j - g->pl, g->sw, g->w, g->ow);
        for (int c = 0; c < g->c; c++)
            for (int i = 0; i < g->kh; i++) {
                float *row = col + ((int64_t)(c * g->kh + i) * g->kw + j) * ld;
                for (int bl = 0; bl < nb; bl++) {
                    const float *xc = x + ((int64_t)(b0 + bl) * g->c + c) * HW;
                    float *out = row + bl * P;
                    for (int oy = 0; oy < g->oh; oy++) {
                        const int iy = oy * g->sh - g->pt + i;
                        float *o = out + (int64_t)oy * g->ow;
                        if (iy < 0 || iy >= g->h) {
                            memset(o, 0, sizeof(float) * (size_t)g->ow);
                            continue;
                        }
                        const float *xr = xc + (int64_t)iy * g->w;
                        if (planned) {
                            for (int gi = 0; gi < plan.groups; gi++)
                                _mm512_mask_storeu_ps(o + gi * 16, plan.st[gi], gather_group(&plan, gi, xr, _mm512_setzero_ps()));
                        } else {
                            for (int ox = 0; ox < g->ow; ox++) {
                                const int ix = ox * g->sw - g->pl + j;
                                o[ox] = ix >= 0 && ix < g->w ? xr[ix] : 0.0f;
                            }
                        }
                    }
                }
            }
    }
}

/* ---- patch im2col: one row of K per output position q, in panels of 32 columns ----
 * colT[(kk/32)*panel_stride(NP) + q*32 + kk%32] = x[b, c, oy*sh - pt + i, ox*sw - pl + j] for
 * kk = (c*kh + i)*kw + j (0 outside), q = b*P + oy*ow + ox, NP rows in all: each panel is a
 * contiguous [NP][32] operand of the dW product. Rows [q0, q0 + nb*P) for images [b0, b0+nb). */
#define IM2ROW_GATHER_K 4096   /* window sizes up to this take the gather path */
/* Floats from one panel to the next: 64 bytes more than the panel, so that row q of every panel
 * does not fall into the same L1 set (NP*32 floats is often a multiple of 4 KiB: LeNet's 512). */
static int64_t panel_stride(int64_t NP) { return NP * 32 + 16; }

static float *panel_at(float *base, int64_t NP, int64_t q, int64_t kk) {
    return base + (kk / 32) * panel_stride(NP) + q * 32 + kk % 32;
}

AVX512 static void im2row_gather(const dl4c_window *g, const float *x, int b0, int nb, float *colT, int64_t NP) {
    const int K = g->c * g->kh * g->kw;
    const int64_t HW = (int64_t)g->h * g->w, P = (int64_t)g->oh * g->ow;
    /* Per element kk = (c, i, j) of a window: its offset c*HW + i*w + j, and i, j. */
    int off[IM2ROW_GATHER_K + 16], ii[IM2ROW_GATHER_K + 16], jj[IM2ROW_GATHER_K + 16];
    for (int kk = 0; kk < K + 16; kk++) {
        const int k = kk < K ? kk : K - 1, c = k / (g->kh * g->kw), i = (k / g->kw) % g->kh, j = k % g->kw;
        off[kk] = (int)(c * HW) + i * g->w + j;
        ii[kk] = i;
        jj[kk] = j;
    }
    const bool pad = g->pt || g->pl || (g->oh - 1) * g->sh + g->kh > g->h || (g->ow - 1) * g->sw + g->kw > g->w;
    for (int bl = 0; bl < nb; bl++) {
        const float *xb = x + (int64_t)(b0 + bl) * g->c * HW;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                const int64_t q = (int64_t)(b0 + bl) * P + (int64_t)oy * g->ow + ox;
                const int iy0 = oy * g->sh - g->pt, ix0 = ox * g->sw - g->pl;
                const __m512i base = _mm512_set1_epi32(iy0 * g->w + ix0);
                for (int k0 = 0; k0 < K; k0 += 16) {
                    __mmask16 m = lanes(K - k0);
                    const __mmask16 st = m;
                    if (pad) {
                        const __m512i iy = _mm512_add_epi32(_mm512_loadu_si512(ii + k0), _mm512_set1_epi32(iy0));
                        const __m512i ix = _mm512_add_epi32(_mm512_loadu_si512(jj + k0), _mm512_set1_epi32(ix0));
                        m &= _mm512_cmpge_epi32_mask(iy, _mm512_setzero_si512()) & _mm512_cmplt_epi32_mask(iy, _mm512_set1_epi32(g->h)) &
                             _mm512_cmpge_epi32_mask(ix, _mm512_setzero_si512()) & _mm512_cmplt_epi32_mask(ix, _mm512_set1_epi32(g->w));
                    }
                    const __m512i idx = _mm512_add_epi32(_mm512_loadu_si512(off + k0), base);
                    _mm512_mask_storeu_ps(panel_at(colT, NP, q, k0), st, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, xb, 4));
                }
            }
    }
}

AVX512 static void im2row(const dl4c_window *g, const float *x, int b0, int nb, float *colT, int64_t NP) {
    const int64_t K = (int64_t)g->c * g->kh * g->kw, HW = (int64_t)g->h * g->w, P = (int64_t)g->oh * g->ow;
    if (K <= IM2ROW_GATHER_K && (int64_t)g->c * HW < ((int64_t)1 << 30)) { im2row_gather(g, x, b0, nb, colT, NP); return; }
    for (int bl = 0; bl < nb; bl++) {   /* large windows: one element at a time */
        const float *xb = x + (int64_t)(b0 + bl) * g->c * HW;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                const int64_t q = (int64_t)(b0 + bl) * P + (int64_t)oy * g->ow + ox;
                int64_t kk = 0;
                for (int c = 0; c < g->c; c++)
                    for (int i = 0; i < g->kh; i++)
                        for (int j = 0; j < g->kw; j++, kk++) {
                            const int iy = oy * g->sh - g->pt + i, ix = ox * g->sw - g->pl + j;
                            *panel_at(colT, NP, q, kk) =
                                iy >= 0 && iy < g->h && ix >= 0 && ix < g->w ? xb[c * HW + (int64_t)iy * g->w + ix] : 0.0f;
                        }
            }
    }
}

/* dx[b] = sum over windows of dcolT (its rows K floats apart; dx of images [b0, b0+nb) set, not
 * accumulated). Each dx row (c, iy) is summed in registers from 0 over the windows that cover
 * it, output rows oy in turn (window row i = iy + pt - oy*sh) and windows ox in each (each
 * window's kw values land on their lanes by a masked load), and stored once: no pass to zero dx, no read-modify-write of a row per
 * window row (those chained through store forwarding where windows overlap). Wider rows or
 * windows: zeroed dx, then element by element in the order (c, i, oy, ox, j). */
#define ROW_REGS 4     /* rows up to 64 floats take the register path */
#define ROW_WINDOWS 128 /* and up to this many windows per row */

/* dx row iy of channel c of one image (its windows' rows in db): NV registers, windows ox =
 * 0..ow-1 with their masks and offsets. */
AVX512 INLINE void row2im_row(const int NV, const dl4c_window *g, float *xr, const float *db, int64_t K, int c,
                              int iy, const __mmask16 (*m)[ROW_REGS], const int (*lo)[ROW_REGS]) {
    /* Two chains per register (even and odd windows), so that the adds do not wait on each
     * other's latency; added together at the end. */
    __m512 acc[ROW_REGS], acc2[ROW_REGS];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[v] = acc2[v] = _mm512_setzero_ps();
    const int top = iy + g->pt;   /* oy*sh + i */
    const int oy_lo = top - g->kh + 1 <= 0 ? 0 : (int)cdiv(top - g->kh + 1, g->sh), oy_hi = imin(g->oh - 1, top / g->sh);
    for (int oy = oy_lo; oy <= oy_hi; oy++) {
        const float *src = db + (int64_t)oy * g->ow * K + (c * g->kh + top - oy * g->sh) * g->kw;
        int ox = 0;
        for (; ox + 1 < g->ow; ox += 2, src += 2 * K)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                acc[v] = _mm512_add_ps(acc[v], _mm512_maskz_loadu_ps(m[ox][v], src - lo[ox][v]));
                acc2[v] = _mm512_add_ps(acc2[v], _mm512_maskz_loadu_ps(m[ox + 1][v], src + K - lo[ox + 1][v]));
            }
        if (ox < g->ow)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[v] = _mm512_add_ps(acc[v], _mm512_maskz_loadu_ps(m[ox][v], src - lo[ox][v]));
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) _mm512_mask_storeu_ps(xr + 16 * v, lanes(g->w - 16 * v), _mm512_add_ps(acc[v], acc2[v]));
}

/* Rows of one register (w <= 16) with OW <= 8 windows: the windows' masks and offsets stay in
 * registers over a whole image. */
AVX512 INLINE void row2im_small(const int OW, const dl4c_window *g, float *xb, const float *db, int64_t K,
                                const __mmask16 (*m)[ROW_REGS], const int (*lo)[ROW_REGS]) {
    const int64_t HW = (int64_t)g->h * g->w;
    __mmask16 mk[8];
    int64_t off[8];
#pragma GCC unroll 8
    for (int ox = 0; ox < OW; ox++) { mk[ox] = m[ox][0]; off[ox] = (int64_t)ox * K - lo[ox][0]; }
    const __mmask16 st = lanes(g->w);
    for (int c = 0; c < g->c; c++)
        for (int iy = 0; iy < g->h; iy++) {
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
            const int top = iy + g->pt;
            const int oy_lo = top - g->kh + 1 <= 0 ? 0 : (int)cdiv(top - g->kh + 1, g->sh), oy_hi = imin(g->oh - 1, top / g->sh);
            for (int oy = oy_lo; oy <= oy_hi; oy++) {
                const float *src = db + (int64_t)oy * OW * K + (c * g->kh + top - oy * g->sh) * g->kw;
#pragma GCC unroll 8
                for (int ox = 0; ox < OW; ox++) {
                    const __m512 v = _mm512_maskz_loadu_ps(mk[ox], src + off[ox]);
                    if (ox & 1) a1 = _mm512_add_ps(a1, v);
                    else a0 = _mm512_add_ps(a0, v);
                }
            }
            _mm512_mask_storeu_ps(xb + c * HW + (int64_t)iy * g->w, st, _mm512_add_ps(a0, a1));
        }
}

AVX512 static void row2im(const dl4c_window *g, const float *dcolT, int64_t K, int b0, int nb, float *dx) {
    const int64_t HW = (int64_t)g->h * g->w;
    const bool regs = g->kw <= 16 && g->w <= 16 * ROW_REGS && g->ow <= ROW_WINDOWS;
    const int nv = (int)cdiv(g->w, 16);
    if (!regs) {
        memset(dx + (int64_t)b0 * g->c * HW, 0, sizeof(float) * (size_t)(nb * g->c * HW));
        for (int bl = 0; bl < nb; bl++) {
            float *xb = dx + (int64_t)(b0 + bl) * g->c * HW;
            const float *db = dcolT + (int64_t)bl * g->oh * g->ow * K;
            for (int c = 0; c < g->c; c++)
                for (int i = 0; i < g->kh; i++)
                    for (int oy = 0; oy < g->oh; oy++) {
                        const int iy = oy * g->sh - g->pt + i;
                        if (iy < 0 || iy >= g->h) continue;
                        float *xr = xb + c * HW + (int64_t)iy * g->w;
                        const float *src = db + (int64_t)oy * g->ow * K + (c * g->kh + i) * g->kw;
                        for (int ox = 0; ox < g->ow; ox++, src += K)
                            for (int j = 0; j < g->kw; j++) {
                                const int ix = ox * g->sw - g->pl + j;
                                if (ix >= 0 && ix < g->w) xr[ix] += src[j];
                            }
                    }
        }
        return;
    }
    __mmask16 m[ROW_WINDOWS][ROW_REGS];
    int lo[ROW_WINDOWS][ROW_REGS];
    for (int ox = 0; ox < g->ow; ox++) {
        const int ix0 = ox * g->sw - g->pl;   /* the window covers [ix0, ix0 + kw) */
        for (int v = 0; v < nv; v++) {
            /* lane l of register v is ix = 16v + l, at src[ix - ix0] when 0 <= ix - ix0 < kw */
            lo[ox][v] = ix0 - 16 * v;
            const int from = imax(lo[ox][v], 0), to = imin(lo[ox][v] + g->kw, imin(16, g->w - 16 * v));
            m[ox][v] = from < to ? (__mmask16)(lanes(to) & ~lanes(from)) : 0;
        }
    }
    if (nv == 1 && g->ow <= 8) {
        for (int bl = 0; bl < nb; bl++) {
            float *xb = dx + (int64_t)(b0 + bl) * g->c * HW;
            const float *db = dcolT + (int64_t)bl * g->oh * g->ow * K;
            switch (g->ow) {
            case 1: row2im_small(1, g, xb, db, K, m, lo); break;
            case 2: row2im_small(2, g, xb, db, K, m, lo); break;
            case 3: row2im_small(3, g, xb, db, K, m, lo); break;
            case 4: row2im_small(4, g, xb, db, K, m, lo); break;
            case 5: row2im_small(5, g, xb, db, K, m, lo); break;
            case 6: row2im_small(6, g, xb, db, K, m, lo); break;
            case 7: row2im_small(7, g, xb, db, K, m, lo); break;
            default: row2im_small(8, g, xb, db, K, m, lo); break;
            }
        }
        return;
    }
    for (int bl = 0; bl < nb; bl++) {
        float *xb = dx + (int64_t)(b0 + bl) * g->c * HW;
        const float *db = dcolT + (int64_t)bl * g->oh * g->ow * K;
        for (int c = 0; c < g->c; c++)
            for (int iy = 0; iy < g->h; iy++) {
                float *xr = xb + c * HW + (int64_t)iy * g->w;
                switch (nv) {
                case 1: row2im_row(1, g, xr, db, K, c, iy, m, lo); break;
                case 2: row2im_row(2, g, xr, db, K, c, iy, m, lo); break;
                case 3: row2im_row(3, g, xr, db, K, c, iy, m, lo); break;
                default: row2im_row(4, g, xr, db, K, c, iy, m, lo); break;
                }
            }
    }
}

/* ---- convolution ---- */

/* Images per group: about 64 KiB of im2col rows (at least one image), and fewer when that
 * leaves fewer than two groups per thread (forward only: no sums cross groups there). */
static int conv_group_images(const dl4c_window *g, int64_t budget_floats) {
    const int64_t K = (int64_t)g->c * g->kh * g->kw, P = (int64_t)g->oh * g->ow;
    int64_t G = budget_floats / (K * P);
    if (G < 1) G = 1;
    if (G > g->n) G = g->n;
    return (int)G;
}

typedef struct conv_job {
    const dl4c_window *g;
    int out, K, P, G, n_groups;
    const float *x, *w, *bias;
    operand wpack;               /* forward: W row blocks packed for the microkernel */
    operand wb;                  /* dx: W as the B operand */
    float *y;                    /* the output (backward: read for act') */
    int act, post_act;           /* epilogue activation; activation applied after (others) */
    dl4c_activation a;           /* the activation */
    int mr, n_mb;
    /* backward */
    const float *dz;             /* dL/dz, NCHW */
    float *dz_rw;                /* the same, writable: dL/dy on entry (dot path; y and a: act') */
    double *dbpart;              /* dot path: [group][out] bias gradient sums */
    uint16_t *mask;              /* relu: bit p of word [(b*out + o)*words + p/16]: y > 0 (or NULL) */
    int words;                   /* mask words per (image, channel): ceil(P / 16) */
    float *dx;
    float *partial;              /* dot dW: [group][out][K] */
    float *dzT, *colT;           /* outer dW: [NP][out], col^T in panels [K/32][NP][32] */
    float *dw;
    int mr_w, n_mb_w, n_panels_w, pan_per_task;
    /* direct path */
    const struct dvec *plan;     /* the vectors of one output plane */
    const int *off;              /* [K]: input offset of each window element */
    int nvec, ob;                /* vectors per plane, channels per block */
    float *db;                   /* direct dW: the bias gradient */
} conv_job;

/* ---- relu masks kept from forward to backward in `saved` ----
 * A header (the output and batch they belong to), then one bit per output: y > 0, which is
 * relu'(y). The backward reads them instead of y (32 times less memory) when the header
 * matches its y and batch, else it reads y. */
typedef struct mask_hdr { const float *y; int64_t n; } mask_hdr;
#define MASK_HDR_FLOATS 4
_Static_assert(sizeof(mask_hdr) <= MASK_HDR_FLOATS * sizeof(float), "mask header");

static int64_t relu_mask_floats(const dl4c_window *g, int out) {
    return MASK_HDR_FLOATS + cdiv((int64_t)g->n * out * cdiv((int64_t)g->oh * g->ow, 16) + 1, 2);
}

/* The mask words of `saved` when they belong to (y, n), else NULL. */
static uint16_t *relu_mask_of(float *saved, const float *y, int64_t n) {
    if (!saved) return NULL;
    mask_hdr h;   /* saved is only float-aligned */
    memcpy(&h, saved, sizeof h);
    return h.y == y && h.n == n ? (uint16_t *)(saved + MASK_HDR_FLOATS) : NULL;
}

/* The mask bits of (image b, channel o) from element `at` of its row on, for lanes m. */
AVX512 INLINE __mmask16 mask_bits(const uint16_t *mask, int words, int out, int b, int o, int64_t at, __mmask16 m) {
    const uint16_t *row = mask + ((int64_t)b * out + o) * words + at / 16;
    const uint32_t w = (uint32_t)row[0] | (uint32_t)row[1] << 16;   /* one spare word at the end */
    return m & (__mmask16)(w >> (at % 16));
}

/* Forward, one group of images: im2col, microkernel tiles, NCHW stores with bias and act. */
AVX512 static void conv_fwd_task(void *ctx, int task) {
    const conv_job *J = ctx;
    const dl4c_window *g = J->g;
    const int b0 = task * J->G, nb = imin(J->G, g->n - b0), P = J->P, out = J->out;
    const int64_t Q = (int64_t)nb * P;
    float *col = dl4c_cpu_arena(0, J->K * Q);
    DL4C_ASSERT(col);
    im2col_rows(g, J->x, b0, nb, col, Q);
    float tile[MR_MAX * 32];
    for (int64_t j0 = 0; j0 < Q; j0 += 32) {
        const int nn = (int)(Q - j0 < 32 ? Q - j0 : 32);
        /* Lanes 0-15 and 16-31 each go to one image's row when they do not cross its end. */
        const int64_t qa = j0, qb = j0 + 16;
        const int ba = (int)(qa / P), pa = (int)(qa % P), bb = (int)(qb / P), pb = (int)(qb % P);
        const bool direct = pa + imin(16, nn) <= P && (nn <= 16 || pb + (nn - 16) <= P);
        for (int bi = 0; bi < J->n_mb; bi++) {
            const int i0 = bi * J->mr, mr = imin(J->mr, out - i0);
            ukr_epi e = {.ldc = P, .m0 = lanes(nn), .m1 = lanes(nn - 16), .bias_row = J->bias + i0, .act = J->act};
            const operand a = operand_at(J->wpack, (int64_t)i0 * J->K), b = {.p = col + j0};
            if (direct) {
                e.c0 = J->y + ((int64_t)(b0 + ba) * out + i0) * P + pa;
                e.c1 = nn > 16 ? J->y + ((int64_t)(b0 + bb) * out + i0) * P + pb : e.c0;
                if (J->mask && P % 16 == 0) {   /* the halves start on mask words */
                    e.mask0 = J->mask + ((int64_t)(b0 + ba) * out + i0) * J->words + pa / 16;
                    e.mask1 = J->mask + ((int64_t)(b0 + bb) * out + i0) * J->words + pb / 16;
                    e.mask_ld = J->words;
                }
                ukr2(mr, J->K, a, mr, b, Q, &e);
                continue;
            }
            /* Lanes crossing an image's end: through a tile, then one store per element. */
            e.c0 = tile; e.c1 = tile + 16; e.ldc = 32;
            ukr2(mr, J->K, a, mr, b, Q, &e);
            for (int i = 0; i < mr; i++)
                for (int l = 0; l < nn; l++) {
                    const int64_t q = j0 + l;
                    J->y[((int64_t)(b0 + q / P) * out + i0 + i) * P + q % P] = tile[i * 32 + l];
                }
        }
    }
    if (J->post_act)
        dl4c_cpu_act_forward(NULL, J->a, J->y + (int64_t)b0 * out * P, 1, (int64_t)nb * out * P);
    if (J->mask && P % 16 != 0)   /* else written by the epilogue */
        for (int64_t r = (int64_t)b0 * out; r < (int64_t)(b0 + nb) * out; r++)
            for (int v = 0; v < J->words; v++) {
                const __mmask16 m = lanes(P - 16 * v);
                J->mask[r * J->words + v] =
                    _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, J->y + r * P + 16 * v), _mm512_setzero_ps(), _CMP_GT_OQ);
            }
}

/* ---- direct convolution: stride 1, no padding, output rows of at least 16, small W ----
 * The output positions q of one image, 16 at a time (vector v: q = 16v + lane), read the input
 * in place: window element kk = (c, i, j) of output (oy, ox) is xb[off[kk] + oy*w + ox], so a
 * vector is one load for its lanes in output row oy and a merged load, w - ow further on, for
 * its lanes in row oy + 1 (ow >= 16: no third row). No im2col: with few weights per window
 * element (LeNet's conv1: 20) that copy costs more than the products it feeds.
 *   forward: y[o][v] = act(sum_kk W[o][kk] x_kk[v] + b[o]), OB channels x NV vectors a tile
 *   dW:      dW[o][kk] = sum over images and vectors of dz[o][v] x_kk[v], as 16-lane partial
 *            sums kept across the batch (one chain per lane), added up at the end */
#define DIRECT_MAX_VEC 256   /* output planes up to 4096 */
typedef struct dvec { int base; __mmask16 m1, m2; } dvec;

static bool conv_direct(const dl4c_window *g, int out) {
    return g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 && g->oh + g->kh - 1 <= g->h &&
           g->ow + g->kw - 1 <= g->w && g->ow >= 16 && cdiv((int64_t)g->oh * g->ow, 16) <= DIRECT_MAX_VEC &&
           (int64_t)out * g->c * g->kh * g->kw <= DOT_MAX_W;
}

/* The vectors of a plane (pl[v]: offset of lane 0, lanes in its first and second output row)
 * and the window offsets, into the caller's arrays, for job J (blocks of at most ob_max of
 * the `out` channels). */
static void direct_plan(conv_job *J, const dl4c_window *g, int out, int ob_max, dvec *pl, int *off) {
    const int P = g->oh * g->ow, nv = (int)cdiv(P, 16), K = g->c * g->kh * g->kw;
    for (int v = 0; v < nv; v++) {
        const int q = 16 * v, oy = q / g->ow, ox = q % g->ow, first = g->ow - ox, valid = P - q;
        pl[v].base = oy * g->w + ox;
        pl[v].m1 = lanes(imin(first, valid));
        pl[v].m2 = (__mmask16)(lanes(imin(16, valid)) & ~lanes(first));
    }
    for (int kk = 0; kk < K; kk++) {
        const int c = kk / (g->kh * g->kw), i = (kk / g->kw) % g->kh, j = kk % g->kw;
        off[kk] = c * g->h * g->w + i * g->w + j;
    }
    J->nvec = nv;
    J->plan = pl;
    J->off = off;
    J->ob = (int)cdiv(out, cdiv(out, ob_max));
}

/* Vector d of the window element whose input starts at p (dw = w - ow). */
AVX512 INLINE __m512 dvec_load(const float *p, const dvec *d, int dw) {
    return _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(d->m1, p + d->base), d->m2, p + d->base + dw);
}

#define DF_OB 10   /* forward tile: channels */
#define DF_NV 2    /* and vectors */
/* Forward tile of image b: channels [o0, o0 + OB), vectors [v0, v0 + NV), W^T as wt[kk*out + o]
 * (scaled up when scale != 0). False, nothing stored, when scaled and a sum is not finite. */
AVX512 INLINE bool dfwd_tile(const int OB, const int NV, const conv_job *J, int b, int o0, int v0,
                             const float *wt, float scale) {
    const dl4c_window *g = J->g;
    const int out = J->out, P = J->P, dw = g->w - g->ow;
    const float *xb = J->x + (int64_t)b * g->c * g->h * g->w;
    const dvec *pl = J->plan + v0;
    __m512 acc[DF_OB][DF_NV];
#pragma GCC unroll 10
    for (int o = 0; o < OB; o++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) acc[o][v] = _mm512_setzero_ps();
    for (int kk = 0; kk < J->K; kk++) {
        const float *p = xb + J->off[kk], *wk = wt + (int64_t)kk * out + o0;
        __m512 xv[DF_NV];
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) xv[v] = dvec_load(p, &pl[v], dw);
#pragma GCC unroll 10
        for (int o = 0; o < OB; o++) {
            const __m512 wv = _mm512_set1_ps(wk[o]);
#pragma GCC unroll 2
            for (int v = 0; v < NV; v++) acc[o][v] = _mm512_fmadd_ps(wv, xv[v], acc[o][v]);
        }
    }
    __mmask16 valid[DF_NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) valid[v] = pl[v].m1 | pl[v].m2;
    if (scale != 0) {
        __mmask16 bad = 0;
#pragma GCC unroll 10
        for (int o = 0; o < OB; o++)
#pragma GCC unroll 2
            for (int v = 0; v < NV; v++) bad |= _mm512_mask_fpclass_ps_mask(valid[v], acc[o][v], 0x99);
        if (bad) return false;
    }
#pragma GCC unroll 10
    for (int o = 0; o < OB; o++) {
        const int64_t row = (int64_t)b * out + o0 + o;
        const __m512 br = J->bias ? _mm512_set1_ps(J->bias[o0 + o]) : _mm512_setzero_ps();
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            const __m512 y = epi_act_apply(epi_sum(acc[o][v], scale, J->bias, br, false, br), J->act);
            _mm512_mask_storeu_ps(J->y + row * P + 16 * (v0 + v), valid[v], y);
            if (J->mask) J->mask[row * J->words + v0 + v] = _mm512_mask_cmp_ps_mask(valid[v], y, _mm512_setzero_ps(), _CMP_GT_OQ);
        }
    }
    return true;
}

AVX512 __attribute__((noinline)) static bool dfwd_n(int ob, int nv, const conv_job *J, int b, int o0, int v0,
                                                    const float *wt, float scale) {
#define DF(o) case o: return nv == 2 ? dfwd_tile(o, 2, J, b, o0, v0, wt, scale) : dfwd_tile(o, 1, J, b, o0, v0, wt, scale);
    switch (ob) { DF(1) DF(2) DF(3) DF(4) DF(5) DF(6) DF(7) DF(8) DF(9) DF(10) }
#undef DF
    DL4C_ASSERT(!"direct tile out of range");
    return false;
}

/* Forward, one image. */
AVX512 static void conv_direct_fwd_task(void *ctx, int b) {
    const conv_job *J = ctx;
    for (int o0 = 0; o0 < J->out; o0 += J->ob)
        for (int v0 = 0; v0 < J->nvec; v0 += DF_NV) {
            const int ob = imin(J->ob, J->out - o0), nv = imin(DF_NV, J->nvec - v0);
            if (J->wpack.scaled && dfwd_n(ob, nv, J, b, o0, v0, J->wpack.scaled, SHIFT_DOWN)) continue;
            dfwd_n(ob, nv, J, b, o0, v0, J->wpack.p, 0);
        }
    if (J->post_act)
        dl4c_cpu_act_forward(NULL, J->a, J->y + (int64_t)b * J->out * J->P, 1, (int64_t)J->out * J->P);
}

#define DB_OB 5   /* dW tile: channels */
#define DB_KB 5   /* and window elements */
/* a[o][k] += dz[o] x_k for the KB window elements at offsets off from xb, vector d (full: 16
 * lanes in one output row, a plain load; else masked and merged loads). */
AVX512 INLINE void dbwd_step(const int OB, const int KB, const __m512 *dz, const float *xb, const int *off,
                             const dvec *d, int dwid, __m512 (*a)[DB_KB], const bool full) {
#pragma GCC unroll 5
    for (int k = 0; k < KB; k++) {
        const __m512 xv = full ? _mm512_loadu_ps(xb + off[k] + d->base) : dvec_load(xb + off[k], d, dwid);
#pragma GCC unroll 5
        for (int o = 0; o < OB; o++) a[o][k] = _mm512_fmadd_ps(dz[o], xv, a[o][k]);
    }
}

/* dW tile over images [b0, b0 + nb): channels [o0, o0 + OB) x window elements [k0, k0 + KB)
 * (offsets off), continuing the 16-lane sums at acc[o*ld + k*16]. */
AVX512 INLINE void dbwd_tile(const int OB, const int KB, const conv_job *J, int b0, int nb, int o0, const int *off,
                             float *acc, int64_t ld) {
    const dl4c_window *g = J->g;
    const int P = J->P, dwid = g->w - g->ow;
    __m512 a[DB_OB][DB_KB];
#pragma GCC unroll 5
    for (int o = 0; o < OB; o++)
#pragma GCC unroll 5
        for (int k = 0; k < KB; k++) a[o][k] = _mm512_load_ps(acc + o * ld + k * 16);
    for (int b = b0; b < b0 + nb; b++) {
        const float *dzb = J->dz + ((int64_t)b * J->out + o0) * P, *xb = J->x + (int64_t)b * g->c * g->h * g->w;
        /* vectors of 16 outputs: plain loads of dz (a mask costs ~10% here), and of x where
         * they lie in one output row; then the last, partial vector */
        for (int v = 0; v < P / 16; v++) {
            const dvec *d = &J->plan[v];
            __m512 dz[DB_OB];
#pragma GCC unroll 5
            for (int o = 0; o < OB; o++) dz[o] = _mm512_loadu_ps(dzb + (int64_t)o * P + 16 * v);
            if (d->m2) dbwd_step(OB, KB, dz, xb, off, d, dwid, a, false);
            else dbwd_step(OB, KB, dz, xb, off, d, dwid, a, true);
        }
        if (P % 16) {
            const int v = P / 16;
            const dvec *d = &J->plan[v];
            __m512 dz[DB_OB];
#pragma GCC unroll 5
            for (int o = 0; o < OB; o++) dz[o] = _mm512_maskz_loadu_ps(d->m1 | d->m2, dzb + (int64_t)o * P + 16 * v);
            dbwd_step(OB, KB, dz, xb, off, d, dwid, a, false);
        }
    }
#pragma GCC unroll 5
    for (int o = 0; o < OB; o++)
#pragma GCC unroll 5
        for (int k = 0; k < KB; k++) _mm512_store_ps(acc + o * ld + k * 16, a[o][k]);
}

AVX512 __attribute__((noinline)) static void dbwd_n(int ob, int kb, const conv_job *J, int b0, int nb, int o0,
                                                    const int *off, float *acc, int64_t ld) {
#define DB(o) case o: switch (kb) { \
    case 1: dbwd_tile(o, 1, J, b0, nb, o0, off, acc, ld); return; case 2: dbwd_tile(o, 2, J, b0, nb, o0, off, acc, ld); return; \
    case 3: dbwd_tile(o, 3, J, b0, nb, o0, off, acc, ld); return; case 4: dbwd_tile(o, 4, J, b0, nb, o0, off, acc, ld); return; \
    case 5: dbwd_tile(o, 5, J, b0, nb, o0, off, acc, ld); return; } break;
    switch (ob) { DB(1) DB(2) DB(3) DB(4) DB(5) }
#undef DB
    DL4C_ASSERT(!"direct dW tile out of range");
}

/* dz = act'(y) dy of channel o of image b, in place unless the activation is the identity (dy
 * is then only read); returns the 16-lane bias gradient sums dbv with dz added. The dW task
 * calls it for activations other than the identity: with the identity (dy given as dz) it adds
 * db up itself after its tiles, in the same order. */
AVX512 static __m512 direct_dz(const conv_job *J, int b, int o, __m512 dbv) {
    const int P = J->P;
    const int64_t row = (int64_t)b * J->out + o;
    float *d = J->dz_rw + row * P;
    const float *yy = J->y + row * P;
    if (J->a != DL4C_IDENTITY && J->a != DL4C_RELU) dl4c_cpu_act_backward(NULL, J->a, yy, d, 1, P);
    for (int v = 0; v < J->nvec; v++) {
        const __mmask16 m = J->plan[v].m1 | J->plan[v].m2;
        if (J->a == DL4C_RELU) {
            const __mmask16 pos = J->mask ? m & J->mask[row * J->words + v]
                                          : _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, yy + 16 * v), _mm512_setzero_ps(), _CMP_GT_OQ);
            const __m512 x = _mm512_maskz_loadu_ps(pos, d + 16 * v);
            /* a full vector takes a plain store: the dW tiles read it back at once, and a masked
             * store does not forward to their loads (the stall was ~30% of conv 1's backward) */
            if (m == 0xffff) _mm512_storeu_ps(d + 16 * v, x);
            else _mm512_mask_storeu_ps(d + 16 * v, m, x);
            dbv = _mm512_add_ps(dbv, x);
        } else {
            dbv = _mm512_add_ps(dbv, _mm512_maskz_loadu_ps(m, d + 16 * v));
        }
    }
    return dbv;
}

/* dW and db of channels [o0, o0 + ob), the whole batch, a few images at a time: their dz rows
 * (made in place) stay in L1 for all the window blocks. */
AVX512 static void conv_direct_dw_task(void *ctx, int task) {
    const conv_job *J = ctx;
    const dl4c_window *g = J->g;
    const int o0 = task * J->ob, ob = imin(J->ob, J->out - o0), K = J->K;
    const int64_t ld = (int64_t)K * 16;
    float *acc = dl4c_cpu_arena(0, ob * ld);
    DL4C_ASSERT(acc);
    memset(acc, 0, sizeof(float) * (size_t)(ob * ld));
    __m512 dbv[DB_OB];
    for (int o = 0; o < ob; o++) dbv[o] = _mm512_setzero_ps();
    const int kbn = (int)cdiv(K, DB_KB), kb = (int)cdiv(K, kbn);
    const int G = imax(1, 6144 / (ob * J->P));   /* dz of the group: up to 24 KiB */
    for (int b0 = 0; b0 < g->n; b0 += G) {
        const int nb = imin(G, g->n - b0);
        if (J->a != DL4C_IDENTITY)
            for (int b = b0; b < b0 + nb; b++)
                for (int o = 0; o < ob; o++) dbv[o] = direct_dz(J, b, o0 + o, dbv[o]);
        for (int k0 = 0; k0 < K; k0 += kb) dbwd_n(ob, imin(kb, K - k0), J, b0, nb, o0, J->off + k0, acc + k0 * 16, ld);
        if (J->a == DL4C_IDENTITY)   /* dz is dy: db from the group's dz the tiles brought into L1,
                                      * the channels' sums side by side (each in direct_dz's order) */
            for (int b = b0; b < b0 + nb; b++) {
                const float *dzb = J->dz + ((int64_t)b * J->out + o0) * J->P;
                for (int v = 0; v < J->nvec; v++) {
                    const __mmask16 m = J->plan[v].m1 | J->plan[v].m2;
                    for (int o = 0; o < ob; o++)
                        dbv[o] = _mm512_add_ps(dbv[o], _mm512_maskz_loadu_ps(m, dzb + (int64_t)o * J->P + 16 * v));
                }
            }
    }
    for (int o = 0; o < ob; o++) {
        for (int k = 0; k < K; k++) J->dw[(int64_t)(o0 + o) * K + k] = _mm512_reduce_add_ps(_mm512_load_ps(acc + o * ld + k * 16));
        J->db[o0 + o] = _mm512_reduce_add_ps(dbv[o]);
    }
}

AVX512 static void pack_w_blocks(const float *w, int out, int K, int mr, float *p) {
    for (int i0 = 0; i0 < out; i0 += mr) {   /* p[i0*K + kk*r + i] = w[(i0+i)*K + kk] */
        const int r = imin(mr, out - i0);
        transpose(w + (int64_t)i0 * K, K, p + (int64_t)i0 * K, r, r, K);
    }
}

AVX512 static void avx_conv2d_forward_act(const dl4c_backend *be, const dl4c_window *g, int out,
                                          dl4c_activation a, const float *x, const float *w,
                                          const float *bias, float *y, float *saved, float *scratch) {
    const int K = g->c * g->kh * g->kw, P = g->oh * g->ow;
    conv_job J = {.g = g, .out = out, .K = K, .P = P, .x = x, .w = w, .bias = bias, .y = y, .a = a};
    J.act = epi_act(a);
    J.post_act = a != DL4C_IDENTITY && J.act == EPI_NONE;
    J.words = (int)cdiv(P, 16);
    if (a == DL4C_RELU && saved) {
        memset(saved, 0, sizeof(mask_hdr));
        J.mask = (uint16_t *)(saved + MASK_HDR_FLOATS);
    }
    if (conv_direct(g, out)) {   /* W^T [K][out] for the tiles' broadcasts */
        dvec plan[DIRECT_MAX_VEC];
        int off[DOT_MAX_W];
        direct_plan(&J, g, out, DF_OB, plan, off);
        float *wt = dl4c_cpu_arena(1, (int64_t)out * K);
        DL4C_ASSERT(wt);
        transpose(w, K, wt, out, out, K);
        J.wpack = operand_of(wt, 1, (int64_t)out * K, (int64_t)out * K, 3);
        dl4c_cpu_parallel(g->n, conv_direct_fwd_task, &J);
        if (J.mask) memcpy(saved, &(mask_hdr){.y = y, .n = g->n}, sizeof(mask_hdr));
        return;
    }
    J.mr = mr_of(out);
    J.n_mb = (int)cdiv(out, J.mr);
    float *wp = dl4c_cpu_arena(1, (int64_t)out * K);
    DL4C_ASSERT(wp);
    pack_w_blocks(w, out, K, J.mr, wp);
    J.wpack = operand_of(wp, 1, (int64_t)out * K, (int64_t)out * K, 3);
    J.G = conv_group_images(g, 16384);
    const int T = dl4c_cpu_threads();
    if (T > 1 && cdiv(g->n, J.G) < 2 * T) J.G = imax(1, (int)cdiv(g->n, 2 * T));
    J.n_groups = (int)cdiv(g->n, J.G);
    dl4c_cpu_parallel(J.n_groups, conv_fwd_task, &J);
    if (J.mask) memcpy(saved, &(mask_hdr){.y = y, .n = g->n}, sizeof(mask_hdr));
}

static void avx_conv2d_forward(const dl4c_backend *be, const dl4c_window *g, int out, const float *x,
                               const float *w, const float *bias, float *z, float *saved, float *scratch) {
    avx_conv2d_forward_act(be, g, out, DL4C_IDENTITY, x, w, bias, z, saved, scratch);
}

/* dz = act'(y) dy in place (rows of P floats), and db[o] = sum over the batch (double). */
typedef struct dz_job {
    const dl4c_window *g; int out, P, o_per_task;
    dl4c_activation a;
    const float *y; float *dy; float *db;
    const uint16_t *mask; int words;   /* relu mask from the forward, or NULL */
} dz_job;

AVX512 static void dz_task(void *ctx, int task) {
    const dz_job *J = ctx;
    const int o0 = task * J->o_per_task, o1 = imin(J->out, o0 + J->o_per_task), P = J->P;
    for (int o = o0; o < o1; o++) {
        __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
        for (int b = 0; b < J->g->n; b++) {
            const int64_t off = ((int64_t)b * J->out + o) * P;
            float *d = J->dy + off;
            const float *yy = J->y + off;
            if (J->a == DL4C_RELU) {
                for (int p = 0; p < P; p += 16) {
                    const __mmask16 m = lanes(P - p);
                    __m512 v = _mm512_maskz_loadu_ps(m, d + p);
                    const __mmask16 pos = J->mask ? mask_bits(J->mask, J->words, J->out, b, o, p, m)
                                                  : _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, yy + p), _mm512_setzero_ps(), _CMP_GT_OQ);
                    v = _mm512_maskz_mov_ps(pos, v);
                    _mm512_mask_storeu_ps(d + p, m, v);
                    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
                    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
                }
            } else {
                if (J->a != DL4C_IDENTITY) dl4c_cpu_act_backward(NULL, J->a, yy, d, 1, P);
                for (int p = 0; p < P; p += 16) {
                    const __m512 v = _mm512_maskz_loadu_ps(lanes(P - p), d + p);
                    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
                    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
                }
            }
        }
        J->db[o] = (float)_mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    }
}

/* dW by dot products, one group of images: partial[o][kk] = sum_q dz[o][q] col[kk][q], 16
 * lanes of q at a time. Rows: dz row o of image bl at dz + bl*dz_img + o*ldo, col row k of
 * image bl at crow[k] + bl*c_img; len values per image. */
#define DOT_OB 4
#define DOT_KB 6
AVX512 INLINE void dot_tile(const int OB, const int KB, const float *dz, int64_t dz_img, int64_t ldo,
                            const float *const *crow, int64_t c_img, int len, int nb, float *part, int64_t ldp) {
    __m512 acc[DOT_OB][DOT_KB];
#pragma GCC unroll 4
    for (int o = 0; o < OB; o++)
#pragma GCC unroll 6
        for (int k = 0; k < KB; k++) acc[o][k] = _mm512_setzero_ps();
    const float *cr[DOT_KB];
#pragma GCC unroll 6
    for (int k = 0; k < KB; k++) cr[k] = crow[k];
    for (int bl = 0; bl < nb; bl++) {
        const float *dzb = dz + bl * dz_img;
        for (int p = 0; p < len; p += 16) {
            const __mmask16 m = lanes(len - p);
            __m512 dv[DOT_OB];
#pragma GCC unroll 4
            for (int o = 0; o < OB; o++) dv[o] = _mm512_maskz_loadu_ps(m, dzb + o * ldo + p);
#pragma GCC unroll 6
            for (int k = 0; k < KB; k++) {
                const __m512 cv = _mm512_maskz_loadu_ps(m, cr[k] + p);
#pragma GCC unroll 4
                for (int o = 0; o < OB; o++) acc[o][k] = _mm512_fmadd_ps(dv[o], cv, acc[o][k]);
            }
        }
#pragma GCC unroll 6
        for (int k = 0; k < KB; k++) cr[k] += c_img;
    }
#pragma GCC unroll 4
    for (int o = 0; o < OB; o++)
#pragma GCC unroll 6
        for (int k = 0; k < KB; k++) part[o * ldp + k] = _mm512_reduce_add_ps(acc[o][k]);
}

AVX512 __attribute__((noinline)) static void dot_tile_n(int ob, int kb, const float *dz, int64_t dz_img, int64_t ldo,
                                                        const float *const *crow, int64_t c_img, int len, int nb,
                                                        float *part, int64_t ldp) {
#define DT(o, k) if (ob == o && kb == k) { dot_tile(o, k, dz, dz_img, ldo, crow, c_img, len, nb, part, ldp); return; }
    DT(4, 6) DT(4, 5) DT(4, 4) DT(4, 3) DT(4, 2) DT(4, 1)
    DT(3, 6) DT(3, 5) DT(3, 4) DT(3, 3) DT(3, 2) DT(3, 1)
    DT(2, 6) DT(2, 5) DT(2, 4) DT(2, 3) DT(2, 2) DT(2, 1)
    DT(1, 6) DT(1, 5) DT(1, 4) DT(1, 3) DT(1, 2) DT(1, 1)
#undef DT
    DL4C_ASSERT(!"dot tile out of range");
}

/* Groups of images for the dot dW: fixed by the shape alone (sums cross groups). */
static int dot_group_images(const dl4c_window *g) {
    const int64_t P = (int64_t)g->oh * g->ow;
    int64_t G = cdiv(1024, P);
    if (G > g->n) G = g->n;
    return (int)(G < 1 ? 1 : G);
}

/* Stride 1 without padding: over the "wide" grid q' = oy*w + ox (ox < w, the columns past ow
 * multiplied by zeros), window row (c, i, j) is the input plane c itself from i*w + j on. */
static bool conv_wide(const dl4c_window *g) {
    return g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 && g->oh + g->kh - 1 == g->h &&
           g->ow + g->kw - 1 == g->w;
}

/* dz = act'(y) dy for one image (written back in place when dx follows), adding each channel's
 * sum to dbsum[o] (double), and when wide != NULL also into wide rows of `ldw` floats per
 * channel, each output row padded with zeros from ow to w. */
#define DZ_SEGS 16   /* output rows up to 256 floats */
AVX512 static void dz_rows(const conv_job *J, int b, double *dbsum, float *wide, int64_t ldw) {
    const dl4c_window *g = J->g;
    const int P = J->P, out = J->out;
    const bool relu = J->a == DL4C_RELU, back = J->dx != NULL || !wide;
    /* Rows of L values (wide: the output rows, stored W apart; else one row of P values). */
    const int rows = wide ? g->oh : 1, L = wide ? g->ow : P, W = wide ? g->w : P;
    const int segs = (int)cdiv(W, 16);
    __mmask16 lm[DZ_SEGS], sm[DZ_SEGS];
    const bool fixed = segs <= DZ_SEGS;
    for (int v = 0; fixed && v < segs; v++) { lm[v] = lanes(L - 16 * v); sm[v] = lanes(W - 16 * v); }
    for (int o = 0; o < out; o++) {
        const int64_t off = ((int64_t)b * out + o) * P;
        float *d = J->dz_rw + off;
        const float *yy = J->y + off;
        if (relu && J->mask && segs <= 2 && fixed) {
            /* relu with the forward's mask: the mask folded into the loads, four independent
             * double sums (the same values summed; the order differs only between chains) */
            __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
            for (int r = 0; r < rows; r++) {
                float *dr = d + (int64_t)r * L;
                const __mmask16 pos0 = mask_bits(J->mask, J->words, out, b, o, (int64_t)r * L, lm[0]);
                const __mmask16 pos1 = segs > 1 ? mask_bits(J->mask, J->words, out, b, o, (int64_t)r * L + 16, lm[1]) : 0;
                const __m512 x0 = _mm512_maskz_loadu_ps(pos0, dr), x1 = _mm512_maskz_loadu_ps(pos1, dr + 16);
                if (back) {
                    _mm512_mask_storeu_ps(dr, lm[0], x0);
                    if (segs > 1) _mm512_mask_storeu_ps(dr + 16, lm[1], x1);
                }
                a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(x0)));
                a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(x0, 1)));
                a2 = _mm512_add_pd(a2, _mm512_cvtps_pd(_mm512_castps512_ps256(x1)));
                a3 = _mm512_add_pd(a3, _mm512_cvtps_pd(_mm512_extractf32x8_ps(x1, 1)));
                if (wide) {
                    float *wr = wide + o * ldw + (int64_t)r * W;
                    _mm512_mask_storeu_ps(wr, sm[0], x0);
                    if (segs > 1) _mm512_mask_storeu_ps(wr + 16, sm[1], x1);
                }
            }
            dbsum[o] += _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
            continue;
        }
        if (J->a != DL4C_IDENTITY && !relu) dl4c_cpu_act_backward(NULL, J->a, yy, d, 1, P);
        __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
        for (int r = 0; r < rows; r++) {
            float *dr = d + (int64_t)r * L;
            const float *yr = yy + (int64_t)r * L;
            float *wr = wide ? wide + o * ldw + (int64_t)r * W : NULL;
            for (int v = 0; v < segs; v++) {
                const __mmask16 m = fixed ? lm[v] : lanes(L - 16 * v);
                __m512 x = _mm512_maskz_loadu_ps(m, dr + 16 * v);
                if (relu) {
                    const __mmask16 pos = J->mask ? mask_bits(J->mask, J->words, out, b, o, (int64_t)r * L + 16 * v, m)
                        : _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, yr + 16 * v), _mm512_setzero_ps(), _CMP_GT_OQ);
                    x = _mm512_maskz_mov_ps(pos, x);
                    if (back) _mm512_mask_storeu_ps(dr + 16 * v, m, x);
                }
                s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
                s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)));
                if (wr) _mm512_mask_storeu_ps(wr + 16 * v, fixed ? sm[v] : lanes(W - 16 * v), x);
            }
        }
        dbsum[o] += _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    }
}

AVX512 static void conv_dot_task(void *ctx, int task) {
    const conv_job *J = ctx;
    const dl4c_window *g = J->g;
    const int b0 = task * J->G, nb = imin(J->G, g->n - b0), P = J->P, out = J->out, K = J->K;
    const int64_t HW = (int64_t)g->h * g->w;
    double *dbsum = J->dbpart + (int64_t)task * out;
    for (int o = 0; o < out; o++) dbsum[o] = 0;
    const float *rows[DOT_MAX_W];   /* K <= DOT_MAX_W on this path */
    const float *dz;
    int64_t dz_img, ldo, c_img;
    int len;
    if (conv_wide(g)) {
        len = (g->oh - 1) * g->w + g->ow;
        const int64_t ldw = (int64_t)g->oh * g->w;
        float *wide = dl4c_cpu_arena(0, (int64_t)nb * out * ldw);
        DL4C_ASSERT(wide);
        for (int bl = 0; bl < nb; bl++) dz_rows(J, b0 + bl, dbsum, wide + (int64_t)bl * out * ldw, ldw);
        dz = wide; dz_img = (int64_t)out * ldw; ldo = ldw;
        for (int k = 0; k < K; k++) {
            const int c = k / (g->kh * g->kw), i = (k / g->kw) % g->kh, j = k % g->kw;
            rows[k] = J->x + (int64_t)b0 * g->c * HW + c * HW + (int64_t)i * g->w + j;
        }
        c_img = (int64_t)g->c * HW;
    } else {
        for (int bl = 0; bl < nb; bl++) dz_rows(J, b0 + bl, dbsum, NULL, 0);
        const int64_t Q = (int64_t)nb * P;
        float *col = dl4c_cpu_arena(0, (int64_t)K * Q);
        DL4C_ASSERT(col);
        im2col_rows(g, J->x, b0, nb, col, Q);
        for (int k = 0; k < K; k++) rows[k] = col + (int64_t)k * Q;
        dz = J->dz + (int64_t)b0 * out * P; dz_img = (int64_t)out * P; ldo = P; c_img = P;
        len = P;
    }
    float *part = J->partial + (int64_t)task * out * K;
    const int obn = (int)cdiv(out, DOT_OB), ob = (int)cdiv(out, obn);
    const int kbn = (int)cdiv(K, DOT_KB), kb = (int)cdiv(K, kbn);
    for (int o0 = 0; o0 < out; o0 += ob)
        for (int k0 = 0; k0 < K; k0 += kb)
            dot_tile_n(imin(ob, out - o0), imin(kb, K - k0), dz + (int64_t)o0 * ldo, dz_img, ldo, rows + k0, c_img,
                       len, nb, part + (int64_t)o0 * K + k0, K);
}

typedef struct sum_job { const float *part; float *dst; int64_t n, per_task; int groups; } sum_job;

AVX512 static void sum_groups_task(void *ctx, int task) {
    const sum_job *S = ctx;
    const int64_t lo = task * S->per_task, hi = lo + S->per_task < S->n ? lo + S->per_task : S->n;
    for (int64_t i = lo; i < hi; i += 16) {
        const __mmask16 m = lanes((int)(hi - i < 16 ? hi - i : 16));
        __m512 s = _mm512_maskz_loadu_ps(m, S->part + i);
        for (int gi = 1; gi < S->groups; gi++) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, S->part + gi * S->n + i));
        _mm512_mask_storeu_ps(S->dst + i, m, s);
    }
}

/* Outer-product dW, phase 1: dz^T and col^T of a group of images. */
AVX512 static void conv_rows_task(void *ctx, int task) {
    const conv_job *J = ctx;
    const dl4c_window *g = J->g;
    const int b0 = task * J->G, nb = imin(J->G, g->n - b0), P = J->P, out = J->out;
    for (int bl = 0; bl < nb; bl++)
        transpose(J->dz + (int64_t)(b0 + bl) * out * P, P, J->dzT + (int64_t)(b0 + bl) * P * out, out, out, P);
    im2row(g, J->x, b0, nb, J->colT, (int64_t)g->n * P);
}

/* Phase 2: dW tiles, one chain over the batch each. */
AVX512 static void conv_outer_task(void *ctx, int task) {
    const conv_job *J = ctx;
    const int NP = J->g->n * J->P;
    const int p_lo = (task / J->n_mb_w) * J->pan_per_task, bi = task % J->n_mb_w;
    const int i0 = bi * J->mr_w, mr = imin(J->mr_w, J->out - i0);
    for (int p = p_lo; p < imin(J->n_panels_w, p_lo + J->pan_per_task); p++) {
        const int j0 = p * 32, nn = J->K - j0;
        ukr_epi e = {.c0 = J->dw + (int64_t)i0 * J->K + j0, .ldc = J->K, .m0 = lanes(nn), .m1 = lanes(nn - 16)};
        e.c1 = e.c0 + 16;
        ukr(mr, NP, J->dzT + i0, J->out, J->colT + (int64_t)p * panel_stride(NP), 32, &e);
    }
}

/* dx, one group of images: dcol^T[q][kk] = sum_o dz[o][q] W[o][kk], then added into dx. */
AVX512 static void conv_dx_task(void *ctx, int task) {
    const conv_job *J = ctx;
    const dl4c_window *g = J->g;
    const int b0 = task * J->G, nb = imin(J->G, g->n - b0), P = J->P, out = J->out, K = J->K;
    /* dcol^T rows padded to whole vectors and 64 bytes more (stores that do not split lines,
     * rows that do not all fall into the same L1 sets) */
    const int64_t ldk = cdiv(K, 16) * 16 + 16;
    float *dcolT = dl4c_cpu_arena(0, (int64_t)nb * P * ldk);
    DL4C_ASSERT(dcolT);
    /* The group's dz as [out][nb*P], so that a tile's rows run on across images. */
    const int64_t Q = (int64_t)nb * P;
    float *dzg = dl4c_cpu_arena(7, (int64_t)out * Q);
    DL4C_ASSERT(dzg);
    for (int bl = 0; bl < nb; bl++)
        for (int o = 0; o < out; o++)
            memcpy(dzg + o * Q + (int64_t)bl * P, J->dz + ((int64_t)(b0 + bl) * out + o) * P, sizeof(float) * (size_t)P);
    const int mr = mr_of((int)Q);
    for (int64_t q0 = 0; q0 < Q; q0 += mr) {
        const int r = (int)(Q - q0 < mr ? Q - q0 : mr);
        for (int j0 = 0; j0 < K; j0 += 32) {
            const int nn = K - j0;
            ukr_epi e = {.c0 = dcolT + q0 * ldk + j0, .ldc = ldk, .m0 = lanes(nn), .m1 = lanes(nn - 16)};
            e.c1 = e.c0 + 16;
            ukr2(r, out, (operand){.p = dzg + q0}, Q, operand_at(J->wb, (int64_t)(j0 / 32) * out * 32), 32, &e);
        }
    }
    row2im(g, dcolT, ldk, b0, nb, J->dx);
}

static bool conv_dot_path(const dl4c_window *g, int out) {
    return (int64_t)out * g->c * g->kh * g->kw <= DOT_MAX_W;
}

static void avx_conv2d_sizes(const dl4c_backend *be, const dl4c_window *g, int out, int64_t *saved,
                             int64_t *scratch) {
    const int64_t K = (int64_t)g->c * g->kh * g->kw, P = (int64_t)g->oh * g->ow, NP = g->n * P;
    *saved = relu_mask_floats(g, out);
    if (conv_dot_path(g, out)) *scratch = cdiv(g->n, dot_group_images(g)) * out * (K + 2) + 32;
    else *scratch = NP * out + cdiv(K, 32) * panel_stride(NP);
}

AVX512 static void avx_conv2d_backward_act(const dl4c_backend *be, const dl4c_window *g, int out,
                                           dl4c_activation a, const float *x, const float *w,
                                           const float *y, float *dy, float *dw, float *db, float *dx,
                                           float *saved, float *scratch) {
    const int K = g->c * g->kh * g->kw, P = g->oh * g->ow, T = dl4c_cpu_threads();
    conv_job J = {.g = g, .out = out, .K = K, .P = P, .x = x, .w = w, .dz = dy, .dz_rw = dy, .dx = dx,
                  .dw = dw, .y = (float *)y, .a = a, .words = (int)cdiv(P, 16)};
    if (a == DL4C_RELU) J.mask = relu_mask_of(saved, y, g->n);
    if (conv_direct(g, out)) {
        /* dz = act'(y) dy, dW and db by channel blocks, each over the whole batch. */
        dvec plan[DIRECT_MAX_VEC];
        int off[DOT_MAX_W];
        direct_plan(&J, g, out, DB_OB, plan, off);
        J.db = db;
        dl4c_cpu_parallel((int)cdiv(out, J.ob), conv_direct_dw_task, &J);
    } else if (conv_dot_path(g, out)) {
        /* dz = act'(y) dy, db and dW by dot products, per group of images. */
        J.G = dot_group_images(g);
        J.n_groups = (int)cdiv(g->n, J.G);
        J.partial = J.n_groups == 1 ? dw : scratch;
        J.dbpart = (double *)(scratch + (((int64_t)J.n_groups * out * K + 1) & ~(int64_t)1));   /* 8-byte aligned */
        dl4c_cpu_parallel(J.n_groups, conv_dot_task, &J);
        if (J.n_groups > 1) {
            sum_job S = {.part = scratch, .dst = dw, .n = (int64_t)out * K, .groups = J.n_groups};
            S.per_task = imax(1024, (int)cdiv(cdiv(S.n, 2 * T), 16) * 16);
            dl4c_cpu_parallel((int)cdiv(S.n, S.per_task), sum_groups_task, &S);
        }
        for (int o = 0; o < out; o++) {
            double sum = 0;
            for (int gi = 0; gi < J.n_groups; gi++) sum += J.dbpart[(int64_t)gi * out + o];
            db[o] = (float)sum;
        }
    } else {
        /* dz = act'(y) dy in place, db. */
        dz_job D = {.g = g, .out = out, .P = P, .a = a, .y = y, .dy = dy, .db = db, .mask = J.mask, .words = J.words};
        D.o_per_task = imax(1, (int)cdiv(out, 4 * T));
        if ((int64_t)g->n * P * out < 32768) D.o_per_task = out;
        dl4c_cpu_parallel((int)cdiv(out, D.o_per_task), dz_task, &D);
        J.dzT = scratch;
        J.colT = scratch + (int64_t)g->n * P * out;
        J.G = imax(1, (int)cdiv(g->n, 4 * T));
        J.n_groups = (int)cdiv(g->n, J.G);
        dl4c_cpu_parallel(J.n_groups, conv_rows_task, &J);
        J.mr_w = mr_of(out);
        J.n_mb_w = (int)cdiv(out, J.mr_w);
        J.n_panels_w = (int)cdiv(K, 32);
        J.pan_per_task = 1;
        dl4c_cpu_parallel((int)(cdiv(J.n_panels_w, J.pan_per_task) * J.n_mb_w), conv_outer_task, &J);
    }
    /* 3. dx. */
    if (dx) {
        /* W in panels [K/32][out][32] (rows K apart would defeat the prefetcher). */
        const int npan = (int)cdiv(K, 32);
        float *wp = dl4c_cpu_arena(2, (int64_t)npan * out * 32);
        DL4C_ASSERT(wp);
        for (int pi = 0; pi < npan; pi++)
            for (int o = 0; o < out; o++) {
                const float *src = w + (int64_t)o * K + pi * 32;
                float *dst = wp + ((int64_t)pi * out + o) * 32;
                _mm512_storeu_ps(dst, _mm512_maskz_loadu_ps(lanes(K - pi * 32), src));
                _mm512_storeu_ps(dst + 16, _mm512_maskz_loadu_ps(lanes(K - pi * 32 - 16), src + 16));
            }
        J.wb = operand_of(wp, 1, (int64_t)npan * out * 32, (int64_t)npan * out * 32, 4);
        J.G = conv_group_images(g, 24576);
        if (T > 1 && cdiv(g->n, J.G) < 2 * T) J.G = imax(1, (int)cdiv(g->n, 2 * T));
        J.n_groups = (int)cdiv(g->n, J.G);
        dl4c_cpu_parallel(J.n_groups, conv_dx_task, &J);
    }
}

static void avx_conv2d_backward(const dl4c_backend *be, const dl4c_window *g, int out, const float *x,
                                const float *w, const float *dz, float *dw, float *db, float *dx,
                                float *saved, float *scratch) {
    /* dz is const here: the identity pass only reads it. */
    avx_conv2d_backward_act(be, g, out, DL4C_IDENTITY, x, w, NULL, (float *)dz, dw, db, dx, saved, scratch);
}

/* ---- dense ---- */
AVX512 static void avx_dense_forward_act(const dl4c_backend *be, dl4c_activation a, const float *x,
                                         const float *w, const float *bias, float *y, int n, int in,
                                         int out) {
    const int act = epi_act(a);
    gemm_run(false, false, n, out, in, x, in, w, out, false, y, out, bias, act);
    if (a != DL4C_IDENTITY && act == EPI_NONE) dl4c_cpu_act_forward(be, a, y, n, out);
}

static void avx_gemm(const dl4c_backend *be, bool ta, bool tb, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (alpha != 1.0f || (beta != 0.0f && beta != 1.0f)) {   /* not used by the layers */
        dl4c_backend_cpu_generic()->gemm(be, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    gemm_run(ta, tb, m, n, k, a, lda, b, ldb, beta == 1.0f, c, ldc, NULL, EPI_NONE);
}

/* ---- pooling ----
 * Forward: per output row, each window position's inputs are gathered as one vector and
 * folded in scan order, as the portable loop: max keeps the first maximum (v > acc, or v NaN),
 * avg adds (padding adds -0, which changes nothing) and scales by 1/(kh kw).
 * Backward (windows that do not overlap): the same scan finds each window's arg max again;
 * dx is written position by position. Overlapping windows use the portable loop. */
typedef struct pool_job {
    dl4c_pooling p; const dl4c_window *g;
    const float *x, *y, *dy; float *dx; float *out;
    int64_t planes, per_task;
    uint8_t *arg;                /* max, forward: each window's arg max (255: none) is kept here */
    const uint8_t *argr;         /* max, backward: ... and read from here instead of x */
    bool relu;                   /* max, forward: no arg max (255) where the maximum is not > 0 */
} pool_job;

/* After a relu: no arg max (-1, kept as 255) for windows whose maximum is not > 0. */
AVX512 INLINE __m512i relu_arg(__m512i best, __m512 mx) {
    return _mm512_mask_mov_epi32(best, _mm512_cmp_ps_mask(mx, _mm512_setzero_ps(), _CMP_NGT_UQ), _mm512_set1_epi32(-1));
}

/* The arg max kept in `saved`: a header naming the batch, then one byte per window. */
typedef struct pool_hdr { const float *x, *y; int64_t n; bool relu; } pool_hdr;
#define POOL_HDR_FLOATS 8
_Static_assert(sizeof(pool_hdr) <= POOL_HDR_FLOATS * sizeof(float), "pool header");

AVX512 static void pool_fwd_task(void *ctx, int task) {
    const pool_job *J = ctx;
    const dl4c_window *g = J->g;
    const bool mx = J->p == DL4C_POOL_MAX;
    const __m512 fill = mx ? _mm512_set1_ps(-INFINITY) : _mm512_set1_ps(-0.0f);
    const __m512 inv = _mm512_set1_ps(1.0f / (float)(g->kh * g->kw));
    gather_plan plans[16];
    for (int j = 0; j < g->kw; j++) gather_plan_make(&plans[j], j - g->pl, g->sw, g->w, g->ow);
    const int64_t lo = task * J->per_task, hi = lo + J->per_task < J->planes ? lo + J->per_task : J->planes;
    for (int64_t bc = lo; bc < hi; bc++) {
        const float *xc = J->x + bc * g->h * g->w;
        float *yc = J->out + bc * g->oh * g->ow;
        for (int oy = 0; oy < g->oh; oy++)
            for (int gi = 0; gi < plans[0].groups; gi++) {
                __m512 acc = mx ? _mm512_set1_ps(-INFINITY) : _mm512_setzero_ps();
                __m512i best = _mm512_set1_epi32(-1);
                for (int i = 0; i < g->kh; i++) {
                    const int iy = oy * g->sh - g->pt + i;
                    if (iy < 0 || iy >= g->h) continue;
                    const float *xr = xc + (int64_t)iy * g->w;
                    for (int j = 0; j < g->kw; j++) {
                        const __m512 v = gather_group(&plans[j], gi, xr, fill);
                        if (mx) {
                            __mmask16 up = _mm512_cmp_ps_mask(v, acc, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                            if (J->arg) {   /* the backward's scan: also the first position inside */
                                up |= _mm512_cmp_epi32_mask(best, _mm512_setzero_si512(), _MM_CMPINT_LT);
                                up &= plans[j].vo[gi];
                                best = _mm512_mask_mov_epi32(best, up, _mm512_set1_epi32(i * g->kw + j));
                            }
                            acc = _mm512_mask_mov_ps(acc, up, v);
                        } else {
                            acc = _mm512_add_ps(acc, v);
                        }
                    }
                }
                if (!mx) acc = _mm512_mul_ps(acc, inv);
                if (J->relu) best = relu_arg(best, acc);
                const int64_t at = (int64_t)oy * g->ow + gi * 16;
                _mm512_mask_storeu_ps(yc + at, plans[0].st[gi], acc);
                if (J->arg) _mm_mask_storeu_epi8(J->arg + bc * g->oh * g->ow + at, plans[0].st[gi], _mm512_cvtepi32_epi8(best));
            }
    }
}


/* Backward of non-overlapping windows (sh >= kh, sw >= kw): each input gets at most one
 * window's gradient, added to the zeroed dx as the portable loop does (0 + d). */
AVX512 static void pool_bwd_task(void *ctx, int task) {
    const pool_job *J = ctx;
    const dl4c_window *g = J->g;
    const bool mx = J->p == DL4C_POOL_MAX;
    const __m512 inv = _mm512_set1_ps(1.0f / (float)(g->kh * g->kw)), zero = _mm512_setzero_ps();
    const __m512 fill = _mm512_set1_ps(-INFINITY);
    const __m512i ilo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i ihi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    gather_plan plans[16];
    for (int j = 0; j < g->kw; j++) gather_plan_make(&plans[j], j - g->pl, g->sw, g->w, g->ow);
    const bool pair = g->kw == 2 && g->sw == 2;
    /* kw = sw = 2: the dx row positions of group gi, ox*2 - pl + {0, 1}, are 2*cnt consecutive
     * floats from s = gi*32 - pl: their masks. */
    __mmask16 pm0[GATHER_MAX_GROUPS], pm1[GATHER_MAX_GROUPS];
    for (int gi = 0; pair && gi < plans[0].groups; gi++) {
        const int cnt = imin(16, g->ow - gi * 16), st = gi * 32 - g->pl;
        pm0[gi] = pm1[gi] = 0;
        for (int t = 0; t < 16; t++) {
            if (t < 2 * cnt && st + t >= 0 && st + t < g->w) pm0[gi] |= (__mmask16)(1u << t);
            if (16 + t < 2 * cnt && st + 16 + t >= 0 && st + 16 + t < g->w) pm1[gi] |= (__mmask16)(1u << t);
        }
    }
    const int64_t lo = task * J->per_task, hi = lo + J->per_task < J->planes ? lo + J->per_task : J->planes;
    for (int64_t bc = lo; bc < hi; bc++) {
        const float *xc = J->argr ? NULL : J->x + bc * g->h * g->w;
        float *dxc = J->dx + bc * g->h * g->w;
        const float *dyc = J->dy + bc * g->oh * g->ow;
        memset(dxc, 0, sizeof(float) * (size_t)(g->h * g->w));
        for (int oy = 0; oy < g->oh; oy++)
            for (int gi = 0; gi < plans[0].groups; gi++) {
                const int ox0 = gi * 16, cnt = imin(16, g->ow - ox0);
                const __m512 d = _mm512_maskz_loadu_ps(lanes(cnt), dyc + (int64_t)oy * g->ow + ox0);
                __m512i best = _mm512_set1_epi32(-1);
                if (mx && J->argr) {   /* 255 (no position) matches no tap */
                    best = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(lanes(cnt), J->argr + bc * g->oh * g->ow + (int64_t)oy * g->ow + ox0));
                } else if (mx) {   /* the portable scan: first position, then v > acc or v NaN */
                    __m512 acc = fill;
                    for (int i = 0; i < g->kh; i++) {
                        const int iy = oy * g->sh - g->pt + i;
                        if (iy < 0 || iy >= g->h) continue;
                        const float *xr = xc + (int64_t)iy * g->w;
                        for (int j = 0; j < g->kw; j++) {
                            const __m512 v = gather_group(&plans[j], gi, xr, fill);
                            const __mmask16 first = _mm512_cmp_epi32_mask(best, _mm512_setzero_si512(), _MM_CMPINT_LT);
                            const __mmask16 up = plans[j].vo[gi] &
                                                 (first | _mm512_cmp_ps_mask(v, acc, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
                            acc = _mm512_mask_mov_ps(acc, up, v);
                            best = _mm512_mask_mov_epi32(best, up, _mm512_set1_epi32(i * g->kw + j));
                        }
                    }
                }
                for (int i = 0; i < g->kh; i++) {
                    const int iy = oy * g->sh - g->pt + i;
                    if (iy < 0 || iy >= g->h) continue;
                    float *xr = dxc + (int64_t)iy * g->w;
                    __m512 v[2];
                    for (int j = 0; j < g->kw; j++) {
                        const __m512 t = mx ? _mm512_maskz_mov_ps(_mm512_cmp_epi32_mask(best, _mm512_set1_epi32(i * g->kw + j), _MM_CMPINT_EQ), d)
                                            : _mm512_mul_ps(d, inv);
                        const __m512 val = _mm512_add_ps(zero, t);
                        if (pair) { v[j] = val; continue; }
                        float lv[16];
                        _mm512_storeu_ps(lv, val);
                        for (int l = 0; l < cnt; l++) {
                            const int ix = (ox0 + l) * g->sw - g->pl + j;
                            if (ix >= 0 && ix < g->w && ((plans[j].vo[gi] >> l) & 1)) xr[ix] = lv[l];
                        }
                    }
                    if (!pair) continue;
                    const int s = ox0 * 2 - g->pl;
                    _mm512_mask_storeu_ps(xr + s, pm0[gi], _mm512_permutex2var_ps(v[0], ilo, v[1]));
                    _mm512_mask_storeu_ps(xr + s + 16, pm1[gi], _mm512_permutex2var_ps(v[0], ihi, v[1]));
                }
            }
    }
}

/* ---- 2x2 windows, stride 2, no padding (the usual pooling): each row pair's 2*cnt inputs come
 * with two loads per row and an even/odd permute, the first window position needs no compare,
 * and when the windows tile the plane the backward writes every dx element (no memset). The
 * same operations as the general path, so the same floats. */
static bool pool_2x2(const dl4c_window *g) {
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->pt == 0 && g->pl == 0 &&
           2 * g->oh <= g->h && 2 * g->ow <= g->w;
}

/* The four inputs t[0..3] of 2x2 windows (k = i*2 + j) folded as the portable loop: max keeps
 * the first maximum (v > acc, or v NaN) and its k in *best; avg is (0 + t0 + t1 + t2 + t3) / 4. */
AVX512 INLINE __m512 pool4_fold(const __m512 *t, bool mx, __m512i *best) {
    if (!mx)
        return _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_setzero_ps(), t[0]), t[1]), t[2]), t[3]),
                             _mm512_set1_ps(0.25f));
    __m512 acc = t[0];
    *best = _mm512_setzero_si512();
    for (int k = 1; k < 4; k++) {
        const __mmask16 up = _mm512_cmp_ps_mask(t[k], acc, _CMP_GT_OQ) | _mm512_cmp_ps_mask(t[k], t[k], _CMP_UNORD_Q);
        acc = _mm512_mask_mov_ps(acc, up, t[k]);
        *best = _mm512_mask_mov_epi32(*best, up, _mm512_set1_epi32(k));
    }
    return acc;
}

AVX512 static void pool_fwd_2x2_task(void *ctx, int task) {
    const pool_job *J = ctx;
    const dl4c_window *g = J->g;
    const bool mx = J->p == DL4C_POOL_MAX;
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const int64_t lo = task * J->per_task, hi = lo + J->per_task < J->planes ? lo + J->per_task : J->planes;
    for (int64_t bc = lo; bc < hi; bc++) {
        const float *xc = J->x + bc * g->h * g->w;
        float *yc = J->out + bc * g->oh * g->ow;
        uint8_t *ac = J->arg ? J->arg + bc * g->oh * g->ow : NULL;
        for (int oy = 0; oy < g->oh; oy++) {
            const float *r0 = xc + (int64_t)(2 * oy) * g->w, *r1 = r0 + g->w;
            for (int ox0 = 0; ox0 < g->ow; ox0 += 16) {
                const int cnt = imin(16, g->ow - ox0);
                const __mmask16 la = lanes(2 * cnt), lb = lanes(2 * cnt - 16), st = lanes(cnt);
                const __m512 a0 = _mm512_maskz_loadu_ps(la, r0 + 2 * ox0), a1 = _mm512_maskz_loadu_ps(lb, r0 + 2 * ox0 + 16);
                const __m512 b0 = _mm512_maskz_loadu_ps(la, r1 + 2 * ox0), b1 = _mm512_maskz_loadu_ps(lb, r1 + 2 * ox0 + 16);
                const __m512 t[4] = {_mm512_permutex2var_ps(a0, ev, a1), _mm512_permutex2var_ps(a0, od, a1),
                                     _mm512_permutex2var_ps(b0, ev, b1), _mm512_permutex2var_ps(b0, od, b1)};
                __m512i best;
                const __m512 acc = pool4_fold(t, mx, &best);
                if (J->relu) best = relu_arg(best, acc);
                if (mx && ac) _mm_mask_storeu_epi8(ac + (int64_t)oy * g->ow + ox0, st, _mm512_cvtepi32_epi8(best));
                _mm512_mask_storeu_ps(yc + (int64_t)oy * g->ow + ox0, st, acc);
            }
        }
    }
}

AVX512 static void pool_bwd_2x2_task(void *ctx, int task) {
    const pool_job *J = ctx;
    const dl4c_window *g = J->g;
    const bool mx = J->p == DL4C_POOL_MAX;
    const __m512 inv = _mm512_set1_ps(0.25f), zero = _mm512_setzero_ps();
    const __m512i ilo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i ihi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const bool tiled = 2 * g->oh == g->h && 2 * g->ow == g->w;
    const int64_t lo = task * J->per_task, hi = lo + J->per_task < J->planes ? lo + J->per_task : J->planes;
    for (int64_t bc = lo; bc < hi; bc++) {
        float *dxc = J->dx + bc * g->h * g->w;
        const float *dyc = J->dy + bc * g->oh * g->ow;
        const uint8_t *ac = J->argr + bc * g->oh * g->ow;
        if (!tiled) memset(dxc, 0, sizeof(float) * (size_t)(g->h * g->w));
        for (int oy = 0; oy < g->oh; oy++) {
            float *r0 = dxc + (int64_t)(2 * oy) * g->w, *r1 = r0 + g->w;
            for (int ox0 = 0; ox0 < g->ow; ox0 += 16) {
                const int cnt = imin(16, g->ow - ox0);
                const __mmask16 la = lanes(2 * cnt), lb = lanes(2 * cnt - 16);
                const __m512 d = _mm512_maskz_loadu_ps(lanes(cnt), dyc + (int64_t)oy * g->ow + ox0);
                __m512 t[4];
                if (mx) {
                    const __m512i best = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(lanes(cnt), ac + (int64_t)oy * g->ow + ox0));
                    for (int k = 0; k < 4; k++)   /* 0 + d at the arg max, as dx = 0 then dx += d */
                        t[k] = _mm512_add_ps(zero, _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(best, _mm512_set1_epi32(k)), d));
                } else {
                    const __m512 v = _mm512_add_ps(zero, _mm512_mul_ps(d, inv));
                    t[0] = t[1] = t[2] = t[3] = v;
                }
                _mm512_mask_storeu_ps(r0 + 2 * ox0, la, _mm512_permutex2var_ps(t[0], ilo, t[1]));
                _mm512_mask_storeu_ps(r0 + 2 * ox0 + 16, lb, _mm512_permutex2var_ps(t[0], ihi, t[1]));
                _mm512_mask_storeu_ps(r1 + 2 * ox0, la, _mm512_permutex2var_ps(t[2], ilo, t[3]));
                _mm512_mask_storeu_ps(r1 + 2 * ox0 + 16, lb, _mm512_permutex2var_ps(t[2], ihi, t[3]));
            }
        }
    }
}

/* ---- 2x2 windows on 4x4 planes (LeNet's second pooling): four planes are 64 consecutive
 * floats, four vectors, and their 16 outputs one vector, so a group of four planes takes a few
 * permutes instead of a 16-lane pass per output row of 2 (1/8 of the lanes). The same
 * operations per output as the 2x2 path, so the same floats and arg max. */
static bool pool_4x4(const dl4c_window *g) { return pool_2x2(g) && g->h == 4 && g->w == 4; }

/* Output lane L = 4 planes' outputs (plane L/4, output L%4 = oy*2 + ox): its input k (k = i*2 + j
 * of the window) as a lane of the plane pair (planes 0-1 or 2-3 as 32 lanes):
 * ((L/4)%2)*16 + 8*((L%4)/2) + 2*(L%2) + 4*(k/2) + k%2. (Tables in static storage: a local
 * array loaded as a vector may be given 64-byte alignment that ASan's fake stack does not keep.) */
static const int32_t POOL4_IDX[4][16] = {
    {0, 2, 8, 10, 16, 18, 24, 26, 0, 2, 8, 10, 16, 18, 24, 26},
    {1, 3, 9, 11, 17, 19, 25, 27, 1, 3, 9, 11, 17, 19, 25, 27},
    {4, 6, 12, 14, 20, 22, 28, 30, 4, 6, 12, 14, 20, 22, 28, 30},
    {5, 7, 13, 15, 21, 23, 29, 31, 5, 7, 13, 15, 21, 23, 29, 31},
};
/* Backward: lane l = r*4 + c of a plane: its window position (r%2)*2 + c%2, and its output
 * (r/2)*2 + c/2. */
static const int32_t POOL4_POS[16] = {0, 1, 0, 1, 2, 3, 2, 3, 0, 1, 0, 1, 2, 3, 2, 3};
static const int32_t POOL4_OUT[16] = {0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3};

AVX512 static void pool_fwd_4x4_task(void *ctx, int task) {
    const pool_job *J = ctx;
    const bool mx = J->p == DL4C_POOL_MAX;
    const __m512i idx[4] = {_mm512_loadu_si512(POOL4_IDX[0]), _mm512_loadu_si512(POOL4_IDX[1]),
                            _mm512_loadu_si512(POOL4_IDX[2]), _mm512_loadu_si512(POOL4_IDX[3])};
    const int64_t lo = task * J->per_task, hi = lo + J->per_task < J->planes ? lo + J->per_task : J->planes;
    for (int64_t bc = lo; bc < hi; bc += 4) {
        const int np = (int)(hi - bc < 4 ? hi - bc : 4);
        const float *xc = J->x + bc * 16;
        __m512 v[4];
        for (int q = 0; q < 4; q++) v[q] = q < np ? _mm512_loadu_ps(xc + 16 * q) : _mm512_setzero_ps();
        __m512 t[4];
        for (int k = 0; k < 4; k++)
            t[k] = _mm512_mask_blend_ps(0xff00, _mm512_permutex2var_ps(v[0], idx[k], v[1]),
                                        _mm512_permutex2var_ps(v[2], idx[k], v[3]));
        const __mmask16 st = lanes(4 * np);
        __m512i best;
        const __m512 acc = pool4_fold(t, mx, &best);
        if (J->relu) best = relu_arg(best, acc);
        if (mx && J->arg) _mm_mask_storeu_epi8(J->arg + bc * 4, st, _mm512_cvtepi32_epi8(best));
        _mm512_mask_storeu_ps(J->out + bc * 4, st, acc);
    }
}

/* dx of 4 planes from their 16 outputs: lane l = r*4 + c of plane p takes output 4p + (r/2)*2 +
 * c/2, when its window position (r%2)*2 + c%2 is the arg max (max) or always (avg). */
AVX512 static void pool_bwd_4x4_task(void *ctx, int task) {
    const pool_job *J = ctx;
    const bool mx = J->p == DL4C_POOL_MAX;
    const __m512 inv = _mm512_set1_ps(0.25f), zero = _mm512_setzero_ps();
    const __m512i pos = _mm512_loadu_si512(POOL4_POS), out_of = _mm512_loadu_si512(POOL4_OUT);
    const int64_t lo = task * J->per_task, hi = lo + J->per_task < J->planes ? lo + J->per_task : J->planes;
    for (int64_t bc = lo; bc < hi; bc += 4) {
        const int np = (int)(hi - bc < 4 ? hi - bc : 4);
        const __mmask16 m = lanes(4 * np);
        const __m512 d = _mm512_maskz_loadu_ps(m, J->dy + bc * 4);
        const __m512i best = mx ? _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, J->argr + bc * 4)) : _mm512_setzero_si512();
        for (int q = 0; q < np; q++) {
            const __m512i at = _mm512_add_epi32(out_of, _mm512_set1_epi32(4 * q));
            const __m512 dq = _mm512_permutexvar_ps(at, d);
            const __m512 val = mx ? _mm512_add_ps(zero, _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(_mm512_permutexvar_epi32(at, best), pos), dq))
                                  : _mm512_add_ps(zero, _mm512_mul_ps(dq, inv));
            _mm512_storeu_ps(J->dx + (bc + q) * 16, val);
        }
    }
}

static int64_t pool_tasks(pool_job *J, const dl4c_window *g) {
    J->planes = (int64_t)g->n * g->c;
    const int64_t per_plane = (int64_t)g->h * g->w;
    int64_t per = cdiv(32768, per_plane);   /* about 32k inputs per task */
    const int T = dl4c_cpu_threads();
    if (T > 1 && cdiv(J->planes, per) < 2 * T) per = cdiv(J->planes, 2 * T);
    J->per_task = per < 1 ? 1 : per;
    return cdiv(J->planes, J->per_task);
}

static bool pool_planned(const dl4c_window *g) {
    return g->kw <= 16 && cdiv(g->ow, 16) <= GATHER_MAX_GROUPS;
}

/* Max pooling over non-overlapping windows keeps the arg max (one byte per window). */
static bool pool_keeps_arg(dl4c_pooling p, const dl4c_window *g) {
    return p == DL4C_POOL_MAX && pool_planned(g) && g->sh >= g->kh && g->sw >= g->kw && g->kh * g->kw < 255;
}

static int64_t avx_pool_saved_floats(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g) {
    return pool_keeps_arg(p, g) ? POOL_HDR_FLOATS + cdiv((int64_t)g->n * g->c * g->oh * g->ow, 4) : 0;
}

/* relu (see backend.h): windows whose maximum is not > 0 keep no arg max (255), so that a
 * backward reading the arg max applies relu'(x) with it: x at a window's arg max is its y. */
static void avx_pool_forward_saved(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g, const float *x,
                                   float *y, float *saved, bool relu) {
    if (!pool_planned(g)) { dl4c_backend_cpu_generic()->pool_forward(be, p, g, x, y); return; }
    pool_job J = {.p = p, .g = g, .x = x, .out = y};
    if (saved && pool_keeps_arg(p, g)) {
        memset(saved, 0, sizeof(pool_hdr));
        J.arg = (uint8_t *)(saved + POOL_HDR_FLOATS);
        J.relu = relu;
    }
    dl4c_cpu_parallel((int)pool_tasks(&J, g), pool_4x4(g) ? pool_fwd_4x4_task : pool_2x2(g) ? pool_fwd_2x2_task : pool_fwd_task, &J);
    if (J.arg) memcpy(saved, &(pool_hdr){.x = x, .y = y, .n = g->n, .relu = J.relu}, sizeof(pool_hdr));
}

static void avx_pool_forward(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g, const float *x, float *y) {
    avx_pool_forward_saved(be, p, g, x, y, NULL, false);
}

static void avx_act_backward(const dl4c_backend *be, dl4c_activation a, const float *y, float *dy, int64_t rows,
                             int64_t len);

static void avx_pool_backward_saved(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g, const float *x,
                                    const float *y, const float *dy, float *dx, const float *saved, bool relu) {
    const int64_t nx = (int64_t)g->n * g->c * g->h * g->w;
    if (!pool_planned(g) || g->sh < g->kh || g->sw < g->kw) {   /* overlapping windows */
        dl4c_backend_cpu_generic()->pool_backward(be, p, g, x, y, dy, dx);
        if (relu) avx_act_backward(be, DL4C_RELU, x, dx, 1, nx);
        return;
    }
    pool_job J = {.p = p, .g = g, .x = x, .y = y, .dy = dy, .dx = dx};
    if (saved && pool_keeps_arg(p, g)) {
        pool_hdr h;   /* saved is only float-aligned */
        memcpy(&h, saved, sizeof h);
        if (h.x == x && h.y == y && h.n == g->n && h.relu == relu) J.argr = (const uint8_t *)(saved + POOL_HDR_FLOATS);
    }
    const bool fast = pool_2x2(g) && (p == DL4C_POOL_AVG || J.argr);
    dl4c_cpu_parallel((int)pool_tasks(&J, g), !fast ? pool_bwd_task : pool_4x4(g) ? pool_bwd_4x4_task : pool_bwd_2x2_task, &J);
    if (relu && !J.argr) avx_act_backward(be, DL4C_RELU, x, dx, 1, nx);   /* relu'(x) not in an arg max */
}

static void avx_pool_backward(const dl4c_backend *be, dl4c_pooling p, const dl4c_window *g, const float *x,
                              const float *y, const float *dy, float *dx) {
    avx_pool_backward_saved(be, p, g, x, y, dy, dx, NULL, false);
}

/* ---- elementwise: the portable ops' operations, 16 lanes at a time ---- */
#define EW_CHUNK 8192    /* elements per task of the elementwise loops */

typedef struct ew_job {
    int op;                          /* what to do (EW_*) */
    dl4c_activation a;
    float *x; const float *y;        /* act: x (in place) / y and dy (x) */
    const dl4c_updater_conf *uc; float lr, bc1, bc2; float *p; const float *gr; float *s; int64_t stride;
    float l1, l2;
    int64_t n;
} ew_job;
enum { EW_ACT_FWD, EW_ACT_BWD, EW_UPDATE, EW_REG_GRAD };

/* ---- exact float arithmetic near underflow ----
 * A float multiply, divide or square root with a subnormal input or result costs a microcode
 * assist; lanes whose inputs are tiny take this path instead: each float operation is done in
 * double and rounded to float (rf). Double rounding is innocuous for +, -, *, / and sqrt when
 * the wider format has at least 2p + 2 bits (53 >= 50), so every result is the float one.
 * The rounding to float is the conversion double -> float -> double where a conversion with a
 * subnormal result takes no assist (cvt_subnormal_fast, measured once: none on the
 * development VM's Xeon), else built from the bits (roundscale at 2^-149). The same floats
 * either way: both round to nearest even at the subnormal spacing. */
static bool cvt_subnormal_fast;

AVX512 INLINE __m512d rf(__m512d d) {
    if (cvt_subnormal_fast) return _mm512_cvtps_pd(_mm512_cvtpd_ps(d));
    const __mmask8 small = _mm512_cmp_pd_mask(_mm512_abs_pd(d), _mm512_set1_pd(0x1p-126), _CMP_LT_OQ);
    const __m512d rn = _mm512_cvtps_pd(_mm512_cvtpd_ps(_mm512_mask_blend_pd(small, d, _mm512_set1_pd(1.0))));
    const __m512d rs = _mm512_mul_pd(_mm512_roundscale_pd(_mm512_mul_pd(d, _mm512_set1_pd(0x1p149)),
                                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                     _mm512_set1_pd(0x1p-149));
    return _mm512_mask_blend_pd(small, rn, rs);
}

/* rf for a value known to round to a normal float or zero (a square root of a float, a sum
 * with a normal epsilon): one conversion each way. */
AVX512 INLINE __m512d rfn(__m512d d) { return _mm512_cvtps_pd(_mm512_cvtpd_ps(d)); }

/* Doubles holding float values -> floats (subnormals built from their integer bits). */
AVX512 INLINE __m256 d2f(__m512d d) {
    if (cvt_subnormal_fast) return _mm512_cvtpd_ps(d);
    const __mmask8 small = _mm512_cmp_pd_mask(_mm512_abs_pd(d), _mm512_set1_pd(0x1p-126), _CMP_LT_OQ);
    const __m256 fn = _mm512_cvtpd_ps(_mm512_mask_blend_pd(small, d, _mm512_set1_pd(1.0)));
    const __m256i mag = _mm512_cvtpd_epi32(_mm512_mul_pd(_mm512_abs_pd(d), _mm512_set1_pd(0x1p149)));
    const __m256i sign = _mm256_and_si256(_mm256_castps_si256(_mm512_cvtpd_ps(_mm512_mask_blend_pd(small, _mm512_set1_pd(1.0), d))),
                                          _mm256_set1_epi32((int)0x80000000u));
    const __m256 fs = _mm256_castsi256_ps(_mm256_or_si256(mag, sign));
    return _mm256_mask_blend_ps(small, fn, fs);
}

/* Lanes (of m) holding a nonzero value below 2^-60 in magnitude. */
AVX512 INLINE __mmask16 tiny_lanes(__mmask16 m, __m512 v) {
    const __m512i a = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff));
    return _mm512_mask_cmpgt_epi32_mask(m, _mm512_set1_epi32(0x21800000), a) &
           _mm512_cmpneq_epi32_mask(a, _mm512_setzero_si512());
}

#define D(x) _mm512_set1_pd((double)(x))
#define LO(v) _mm512_cvtps_pd(_mm512_castps512_ps256(v))
#define HI(v) _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1))

typedef struct ew_job ew_job;
/* dw + l2 w + l1 sign(w) for 8 lanes in exact float arithmetic. */
AVX512 INLINE __m512d reg_grad_exact8(const ew_job *J, __m512d dw, __m512d w, __m512d sg) {
    /* l1 = 0: l1 sign(w) is +-0 exactly, and adding it to a float is exact */
    const __m512d t = J->l1 == 0 ? _mm512_add_pd(rf(_mm512_mul_pd(D(J->l2), w)), _mm512_mul_pd(D(J->l1), sg))
                                 : rf(_mm512_add_pd(rf(_mm512_mul_pd(D(J->l2), w)), rf(_mm512_mul_pd(D(J->l1), sg))));
    return rf(_mm512_add_pd(dw, t));
}

/* One update of 8 lanes in exact float arithmetic: *p, *s (and *v for adam) in and out. */
AVX512 INLINE void update_exact8(const ew_job *J, __m512d *p, __m512d g, __m512d *s, __m512d *v) {
    const dl4c_updater_conf *c = J->uc;
    const __m512d lr = D(J->lr);
    switch (c->type) {
    case DL4C_SGD:
        *p = rf(_mm512_sub_pd(*p, rf(_mm512_mul_pd(lr, g))));
        break;
    case DL4C_NESTEROVS: {
        const __m512d mu = D(c->momentum);
        *s = rf(_mm512_add_pd(rf(_mm512_mul_pd(mu, *s)), g));
        *p = rf(_mm512_sub_pd(*p, rf(_mm512_mul_pd(lr, rf(_mm512_add_pd(g, rf(_mm512_mul_pd(mu, *s))))))));
        break;
    }
    case DL4C_ADAGRAD: {
        *s = rf(_mm512_add_pd(*s, rf(_mm512_mul_pd(g, g))));
        /* sqrt of a float >= 0 is 0 or >= 2^-75, plus epsilon: normal */
        const __m512d den = rfn(_mm512_add_pd(rfn(_mm512_sqrt_pd(*s)), D(c->epsilon)));
        *p = rf(_mm512_sub_pd(*p, rf(_mm512_div_pd(rf(_mm512_mul_pd(lr, g)), den))));
        break;
    }
    case DL4C_RMSPROP: {
        *s = rf(_mm512_add_pd(rf(_mm512_mul_pd(D(c->rho), *s)), rf(_mm512_mul_pd(rf(_mm512_mul_pd(D(1 - c->rho), g)), g))));
        const __m512d den = rfn(_mm512_add_pd(rfn(_mm512_sqrt_pd(*s)), D(c->epsilon)));
        *p = rf(_mm512_sub_pd(*p, rf(_mm512_div_pd(rf(_mm512_mul_pd(lr, g)), den))));
        break;
    }
    default: {   /* adam: s holds m, v holds v */
        *s = rf(_mm512_add_pd(rf(_mm512_mul_pd(D(c->beta1), *s)), rf(_mm512_mul_pd(D(1 - c->beta1), g))));
        *v = rf(_mm512_add_pd(rf(_mm512_mul_pd(D(c->beta2), *v)), rf(_mm512_mul_pd(rf(_mm512_mul_pd(D(1 - c->beta2), g)), g))));
        const __m512d num = rf(_mm512_mul_pd(lr, rf(_mm512_div_pd(*s, D(J->bc1)))));
        const __m512d den = rfn(_mm512_add_pd(rfn(_mm512_sqrt_pd(rf(_mm512_div_pd(*v, D(J->bc2))))), D(c->epsilon)));
        *p = rf(_mm512_sub_pd(*p, rf(_mm512_div_pd(num, den))));
        break;
    }
    }
}

AVX512 static void ew_range(const ew_job *J, int64_t lo, int64_t hi) {
    const __m512 zero = _mm512_setzero_ps(), alpha = _mm512_set1_ps(LEAKY_ALPHA), one = _mm512_set1_ps(1.0f);
    for (int64_t i = lo; i < hi; i += 16) {
        const __mmask16 m = lanes((int)(hi - i < 16 ? hi - i : 16));
        switch (J->op) {
        case EW_ACT_FWD: {
            const __m512 v = _mm512_maskz_loadu_ps(m, J->x + i);
            const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
            _mm512_mask_storeu_ps(J->x + i, m, J->a == DL4C_RELU ? _mm512_mask_blend_ps(neg, v, zero)
                                                                  : _mm512_mask_blend_ps(neg, v, _mm512_mul_ps(alpha, v)));
            break;
        }
        case EW_ACT_BWD: {
            const __m512 yv = _mm512_maskz_loadu_ps(m, J->y + i), d = _mm512_maskz_loadu_ps(m, J->x + i);
            const __mmask16 pos = _mm512_cmp_ps_mask(yv, zero, _CMP_GT_OQ);
            __m512 r;
            switch (J->a) {
            case DL4C_RELU: r = _mm512_maskz_mov_ps(pos, d); break;
            case DL4C_LEAKYRELU: r = _mm512_mask_blend_ps(pos, _mm512_mul_ps(alpha, d), d); break;
            case DL4C_SIGMOID: r = _mm512_mul_ps(d, _mm512_mul_ps(yv, _mm512_sub_ps(one, yv))); break;
            default: /* tanh */ r = _mm512_mul_ps(d, _mm512_sub_ps(one, _mm512_mul_ps(yv, yv))); break;
            }
            _mm512_mask_storeu_ps(J->x + i, m, r);
            break;
        }
        case EW_REG_GRAD: {   /* dw += l2 w + l1 sign(w) */
            const __m512 w = _mm512_maskz_loadu_ps(m, J->y + i), dw = _mm512_maskz_loadu_ps(m, J->x + i);
            const __m512 sg = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(w, zero, _CMP_LT_OQ),
                                                   _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(w, zero, _CMP_GT_OQ), one),
                                                   _mm512_set1_ps(-1.0f));
            if (tiny_lanes(m, w) | tiny_lanes(m, dw)) {
                const __m256 r0 = d2f(reg_grad_exact8(J, LO(dw), LO(w), LO(sg)));
                const __m256 r1 = d2f(reg_grad_exact8(J, HI(dw), HI(w), HI(sg)));
                _mm512_mask_storeu_ps(J->x + i, m, _mm512_insertf32x8(_mm512_castps256_ps512(r0), r1, 1));
                break;
            }
            const __m512 t = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(J->l2), w), _mm512_mul_ps(_mm512_set1_ps(J->l1), sg));
            _mm512_mask_storeu_ps(J->x + i, m, _mm512_add_ps(dw, t));
            break;
        }
        case EW_UPDATE: {
            const dl4c_updater_conf *c = J->uc;
            const __m512 lr = _mm512_set1_ps(J->lr), g = _mm512_maskz_loadu_ps(m, J->gr + i);
            __m512 p = _mm512_maskz_loadu_ps(m, J->p + i);
            const int slots = dl4c_updater_state_per_param(c->type);
            const __m512 sv = slots ? _mm512_maskz_loadu_ps(m, J->s + i) : zero;
            const __m512 vv = slots > 1 ? _mm512_maskz_loadu_ps(m, J->s + J->stride + i) : zero;
            if (tiny_lanes(m, g) | tiny_lanes(m, p) | tiny_lanes(m, sv) | tiny_lanes(m, vv)) {
                __m512d ph[2] = {LO(p), HI(p)}, sh[2] = {LO(sv), HI(sv)}, vh[2] = {LO(vv), HI(vv)};
                const __m512d gh[2] = {LO(g), HI(g)};
                update_exact8(J, &ph[0], gh[0], &sh[0], &vh[0]);   /* inlined: the two halves' chains overlap */
                update_exact8(J, &ph[1], gh[1], &sh[1], &vh[1]);
#define F16(a) _mm512_insertf32x8(_mm512_castps256_ps512(d2f(a[0])), d2f(a[1]), 1)
                _mm512_mask_storeu_ps(J->p + i, m, F16(ph));
                if (slots) _mm512_mask_storeu_ps(J->s + i, m, F16(sh));
                if (slots > 1) _mm512_mask_storeu_ps(J->s + J->stride + i, m, F16(vh));
#undef F16
                break;
            }
            switch (c->type) {
            case DL4C_SGD:
                p = _mm512_sub_ps(p, _mm512_mul_ps(lr, g));
                break;
            case DL4C_NESTEROVS: {
                const __m512 mu = _mm512_set1_ps(c->momentum);
                const __m512 s = _mm512_add_ps(_mm512_mul_ps(mu, sv), g);
                _mm512_mask_storeu_ps(J->s + i, m, s);
                p = _mm512_sub_ps(p, _mm512_mul_ps(lr, _mm512_add_ps(g, _mm512_mul_ps(mu, s))));
                break;
            }
            case DL4C_ADAGRAD: {
                const __m512 s = _mm512_add_ps(sv, _mm512_mul_ps(g, g));
                _mm512_mask_storeu_ps(J->s + i, m, s);
                p = _mm512_sub_ps(p, _mm512_div_ps(_mm512_mul_ps(lr, g), _mm512_add_ps(_mm512_sqrt_ps(s), _mm512_set1_ps(c->epsilon))));
                break;
            }
            case DL4C_RMSPROP: {
                const __m512 rho = _mm512_set1_ps(c->rho), omr = _mm512_set1_ps(1 - c->rho);
                const __m512 s = _mm512_add_ps(_mm512_mul_ps(rho, sv),
                                               _mm512_mul_ps(_mm512_mul_ps(omr, g), g));
                _mm512_mask_storeu_ps(J->s + i, m, s);
                p = _mm512_sub_ps(p, _mm512_div_ps(_mm512_mul_ps(lr, g), _mm512_add_ps(_mm512_sqrt_ps(s), _mm512_set1_ps(c->epsilon))));
                break;
            }
            default: {   /* adam */
                float *mm = J->s, *vp = J->s + J->stride;
                const __m512 b1 = _mm512_set1_ps(c->beta1), b2 = _mm512_set1_ps(c->beta2);
                const __m512 mv = _mm512_add_ps(_mm512_mul_ps(b1, sv),
                                                _mm512_mul_ps(_mm512_set1_ps(1 - c->beta1), g));
                const __m512 vn = _mm512_add_ps(_mm512_mul_ps(b2, vv),
                                                _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(1 - c->beta2), g), g));
                _mm512_mask_storeu_ps(mm + i, m, mv);
                _mm512_mask_storeu_ps(vp + i, m, vn);
                const __m512 num = _mm512_mul_ps(lr, _mm512_div_ps(mv, _mm512_set1_ps(J->bc1)));
                const __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_div_ps(vn, _mm512_set1_ps(J->bc2))), _mm512_set1_ps(c->epsilon));
                p = _mm512_sub_ps(p, _mm512_div_ps(num, den));
                break;
            }
            }
            _mm512_mask_storeu_ps(J->p + i, m, p);
            break;
        }
        }
    }
}



AVX512 static void ew_task(void *ctx, int task) {
    const ew_job *J = ctx;
    const int64_t lo = (int64_t)task * EW_CHUNK, hi = lo + EW_CHUNK < J->n ? lo + EW_CHUNK : J->n;
    ew_range(J, lo, hi);
}

static void ew_run(ew_job *J) {
    if (J->n <= 0) return;
    dl4c_cpu_parallel((int)cdiv(J->n, EW_CHUNK), ew_task, J);
}

static void avx_act_forward(const dl4c_backend *be, dl4c_activation a, float *x, int64_t rows, int64_t len) {
    if (a != DL4C_RELU && a != DL4C_LEAKYRELU) { dl4c_cpu_act_forward(be, a, x, rows, len); return; }
    ew_job J = {.op = EW_ACT_FWD, .a = a, .x = x, .n = rows * len};
    ew_run(&J);
}

static void avx_act_backward(const dl4c_backend *be, dl4c_activation a, const float *y, float *dy, int64_t rows,
                             int64_t len) {
    if (a == DL4C_IDENTITY || a == DL4C_SOFTMAX) { dl4c_cpu_act_backward(be, a, y, dy, rows, len); return; }
    ew_job J = {.op = EW_ACT_BWD, .a = a, .x = dy, .y = y, .n = rows * len};
    ew_run(&J);
}

static void avx_reg_grad(const dl4c_backend *be, const float *w, float *dw, int64_t n, float l1, float l2) {
    ew_job J = {.op = EW_REG_GRAD, .x = dw, .y = w, .l1 = l1, .l2 = l2, .n = n};
    ew_run(&J);
}

static void avx_updater_step(const dl4c_backend *be, const dl4c_updater_conf *c, float lr, int64_t step,
                             float *p, const float *g, float *s, int64_t n, int64_t stride) {
    if (c->type < 0 || c->type >= DL4C_UPDATER_COUNT) { dl4c_updater_step(c, lr, step, p, g, s, n, stride); return; }
    ew_job J = {.op = EW_UPDATE, .uc = c, .lr = lr, .p = p, .gr = g, .s = s, .stride = stride, .n = n};
    if (c->type == DL4C_ADAM) {
        J.bc1 = 1.0f - powf(c->beta1, (float)step);
        J.bc2 = 1.0f - powf(c->beta2, (float)step);
    }
    ew_run(&J);
}

/* db[j] = sum_i dz[i, j], rows in order (as the portable loop). */
AVX512 static void avx_sum_rows(const dl4c_backend *be, const float *dz, float *db, int rows, int len) {
    for (int o = 0; o < len; o += 16) {
        const __mmask16 m = lanes(len - o);
        __m512 s = _mm512_setzero_ps();
        for (int i = 0; i < rows; i++) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, dz + (int64_t)i * len + o));
        _mm512_mask_storeu_ps(db + o, m, s);
    }
}

/* acc += l1 sum |w| + 0.5 l2 sum w^2, in double (8 lanes, then their sum). */
AVX512 static void avx_reg_score(const dl4c_backend *be, const float *w, int64_t n, float l1, float l2, double *acc) {
    __m512d s1 = _mm512_setzero_pd(), s2 = _mm512_setzero_pd();
    for (int64_t k = 0; k < n; k += 8) {
        const __mmask8 m = (__mmask8)(n - k >= 8 ? 0xff : (1u << (n - k)) - 1);
        const __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, w + k));
        s1 = _mm512_add_pd(s1, _mm512_abs_pd(v));
        s2 = _mm512_add_pd(s2, _mm512_mul_pd(v, v));
    }
    *acc += l1 * _mm512_reduce_add_pd(s1) + 0.5 * l2 * _mm512_reduce_add_pd(s2);
}

static void avx_set_threads(const dl4c_backend *be, int threads) {
    dl4c_cpu_set_threads(threads);
    dl4c_backend_cpu_generic()->set_threads(be, 1);   /* OpenBLAS (fallback products): one thread */
}

static void avx_parallel(const dl4c_backend *be, int n_tasks, void (*fn)(void *ctx, int task), void *ctx) {
    dl4c_cpu_parallel(n_tasks, fn, ctx);
}

/* Each line of [p, p + bytes) requested into this core's L2 (a line another core wrote comes
 * over while this thread goes on). */
static void avx_prefetch(const dl4c_backend *be, const void *p, size_t bytes) {
    (void)be;
    const char *c = (const char *)((uintptr_t)p & ~(uintptr_t)63), *e = (const char *)p + bytes;
    for (; c < e; c += 64) _mm_prefetch(c, _MM_HINT_T1);
}

/* Seconds for n dependent double -> float -> double conversions of v (8 lanes). */
AVX512 __attribute__((noinline)) static double cvt_chain_seconds(double v, int n) {
    __m512d d = _mm512_set1_pd(v);
    const double t0 = dl4c_now();
    for (int i = 0; i < n; i++) {
        d = _mm512_cvtps_pd(_mm512_cvtpd_ps(d));
        __asm__ volatile("" : "+v"(d));
    }
    const double t = dl4c_now() - t0;
    double out[8];
    _mm512_storeu_pd(out, d);
    return out[0] == v ? t : 1e9;   /* v is a float: the chain keeps it */
}

/* Whether conversions with subnormal float results run at full speed here: the best of 3
 * timings of a chain producing 2^-140 against one producing 1.0 (an assist costs ~100 cycles
 * a conversion). A timing spoilt by preemption can only cost speed: both ways of rounding give
 * the same floats. */
static bool cvt_subnormal_measure(void) {
    double sub = 1e9, nrm = 1e9;
    for (int r = 0; r < 3; r++) {
        const double a = cvt_chain_seconds(0x1p-140, 2000), b = cvt_chain_seconds(1.0, 2000);
        sub = a < sub ? a : sub;
        nrm = b < nrm ? b : nrm;
    }
    return sub < 2 * nrm;
}

bool dl4c_cpu_avx512_round_by_cvt(bool on) {
    const bool was = cvt_subnormal_fast;
    cvt_subnormal_fast = on;
    return was;
}

void dl4c_cpu_avx512_install(dl4c_backend *be) {
    cvt_subnormal_fast = cvt_subnormal_measure();
    be->gemm = avx_gemm;
    be->conv2d_sizes = avx_conv2d_sizes;
    be->conv2d_forward = avx_conv2d_forward;
    be->conv2d_backward = avx_conv2d_backward;
    be->conv2d_forward_act = avx_conv2d_forward_act;
    be->conv2d_backward_act = avx_conv2d_backward_act;
    be->dense_forward_act = avx_dense_forward_act;
    be->act_forward = avx_act_forward;
    be->act_backward = avx_act_backward;
    be->pool_forward = avx_pool_forward;
    be->pool_backward = avx_pool_backward;
    be->pool_saved_floats = avx_pool_saved_floats;
    be->pool_forward_saved = avx_pool_forward_saved;
    be->pool_backward_saved = avx_pool_backward_saved;
    be->sum_rows = avx_sum_rows;
    be->reg_score = avx_reg_score;
    be->reg_grad = avx_reg_grad;
    be->updater_step = avx_updater_step;
    be->set_threads = avx_set_threads;
    be->parallel = avx_parallel;
    be->prefetch = avx_prefetch;
}

#else   /* not x86-64 with GCC or clang */

bool dl4c_cpu_avx512_usable(void) { return false; }
static void avx_parallel(const dl4c_backend *be, int n_tasks, void (*fn)(void *ctx, int task), void *ctx) {
    dl4c_cpu_parallel(n_tasks, fn, ctx);
}

void dl4c_cpu_avx512_install(dl4c_backend *be) { (void)be; }
bool dl4c_cpu_avx512_round_by_cvt(bool on) { (void)on; return false; }

#endif
