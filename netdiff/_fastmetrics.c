/* Fused divergence-metric kernels for netdiff (optional; netdiff/metrics.py has the numpy reference).
 *
 * Two passes over a reference/target pair of flat, C-contiguous float64/float32/float16 buffers:
 *   stats(): every pass-1 sum at once (float64 accumulators; r*r, x*x, r*x, (x-r)^2 exact for
 *            float32/float16 data), optionally per-channel sums;
 *   kl():    msaccucmp's KL sums with the min-max normalisation, a vectorised log.
 * Both release the GIL. Inputs are read through the buffer protocol only (no numpy headers).
 * float16 is widened to float32 through a 64K-entry table.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Results that do not depend on the build level (docs/metrics.md). The float64 sums (for float32/float16
 * data of exact products r*r, x*x, r*x, (x-r)^2: float32 values widen exactly) differ between builds
 * only by float64 rounding, being added in an order set by the vector width; the float32 loops keep
 * LANES fixed lanes added in element order, so their results are bit-identical at every level; and
 * setup.py builds with -ffp-contract=off, so no fused multiply-add changes an element-wise result.
 * tests/speed builds and checks every level the test machine runs.
 * A build for an x86-64 level refuses to load on a CPU without it (netdiff then uses numpy). */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define ND_LEVEL "x86-64-v4"
#elif defined(__AVX2__) && defined(__FMA__)
#define ND_LEVEL "x86-64-v3"
#elif defined(__SSE4_2__) && defined(__POPCNT__)
#define ND_LEVEL "x86-64-v2"
#else
#define ND_LEVEL "portable"
#endif

/* The vectorised loops are compiled on their own (inlined into their callers GCC 12 stops vectorising
 * some of them at x86-64-v3). */
#if defined(__GNUC__)
#define ND_NOINLINE __attribute__((noinline))
#else
#define ND_NOINLINE
#endif
#ifndef ND_SOURCE_DIGEST /* set by setup.py / _buildflags.build_kernel: SHA-256 prefix of this file */
#define ND_SOURCE_DIGEST ""
#endif
#define SEG 2048 /* elements per segment: both sides stay in L1 */
#define LANES 8 /* fixed lanes of the float32 loops */
#define FBLOCK 16 /* float32 terms per lane before a float64 spill */
#define HIST_RUN 64 /* contiguous pairs per histogram sample run */
/* The loops reading the dumps ask for the cache lines they will need PF_DIST elements (or one segment)
 * ahead: memory-mapped page-cache data comes in 4 KB pages, where the hardware prefetchers stop, and
 * without this the reads waited on memory instead of overlapping the arithmetic (pass 2 took twice its
 * compute time on 1 GB dumps). A prefetch never faults, so it may point past the end of the data. */
#define PF_DIST 1024
#if defined(__GNUC__)
#define ND_PREFETCH(base, ahead) __builtin_prefetch((const void *)((uintptr_t)(base) + (uintptr_t)(ahead) * sizeof *(base)), 0, 3)
#else
#define ND_PREFETCH(base, ahead) ((void)0)
#endif

enum { K_F64 = 0, K_F32 = 1, K_F16 = 2 };

static float half_table[65536];

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* log(t) for positive normal t, relative error ~1e-16: t = 2^e * m, m in [sqrt(1/2), sqrt(2)),
 * log(m) = 2 atanh(s) with s = (m - 1) / (m + 1), |s| < 0.1716, series to s^21. Branch-free. */
static inline double fast_log(double t) {
    uint64_t b, mb, eb;
    memcpy(&b, &t, 8);
    mb = (b & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL;
    eb = ((b >> 52) & 0x7FFULL) | 0x4330000000000000ULL; /* 2^52 + biased exponent */
    double m, e;
    memcpy(&m, &mb, 8);
    memcpy(&e, &eb, 8);
    e -= 4503599627370496.0 + 1023.0;
    int above = m > 1.4142135623730951;
    double big = (double)above;
    m = m * (1.0 - 0.5 * big);
    e = e + big;
    double s = (m - 1.0) / (m + 1.0), z = s * s;
    double poly = 1.0 / 21;
    poly = poly * z + 1.0 / 19;
    poly = poly * z + 1.0 / 17;
    poly = poly * z + 1.0 / 15;
    poly = poly * z + 1.0 / 13;
    poly = poly * z + 1.0 / 11;
    poly = poly * z + 1.0 / 9;
    poly = poly * z + 1.0 / 7;
    poly = poly * z + 1.0 / 5;
    poly = poly * z + 1.0 / 3;
    poly = poly * z + 1.0;
    return e * 0.6931471805599453 + 2.0 * s * poly;
}

/* float32 log of positive normal t, relative error ~2e-7: t = 2^e * m with m in [sqrt(1/2), sqrt(2))
 * taken by integer arithmetic on the bits (no compare), then a degree-8 fit of log(m). */
static inline float fast_logf(float t) {
    int32_t b, mb;
    memcpy(&b, &t, 4);
    b -= 0x3F3504F3; /* bits of sqrt(1/2): the exponent of t / sqrt(1/2) */
    float m, e = (float)(b >> 23); /* arithmetic shift: floor */
    mb = (b & 0x007FFFFF) + 0x3F3504F3;
    memcpy(&m, &mb, 4);
    float u = m - 1.0f;
    float poly = 0.08632387220859528f;
    poly = poly * u - 0.14196032285690308f;
    poly = poly * u + 0.14908722043037415f;
    poly = poly * u - 0.16583247482776642f;
    poly = poly * u + 0.1996299922466278f;
    poly = poly * u - 0.2500135600566864f;
    poly = poly * u + 0.33333998918533325f;
    poly = poly * u - 0.4999999403953552f;
    poly = poly * u + 1.0f;
    return e * 0.693147180559945f + u * poly;
}

/* ---- pass 1: stats ---- */

typedef struct {
    int64_t count, n, rel_count;
    double rr, xx, rx, dd, abs_sum, abs_max, rel_sum, rel_max, dmin, dmax;
    int64_t side_n[2], side_nan[2], side_inf[2];
    double side_s1[2], side_s2[2], side_lo[2], side_hi[2];
} Acc;

typedef struct { double rr, xx, rx, dd; } Seg;

/* One all-finite segment's sums and extremes, added to the accumulator in one place. */
typedef struct {
    double rr, xx, rx, dd, abs_sum, abs_max, rel_sum, rel_count, rel_max, s1r, s1x, lr, hr, lx, hx, dlo, dhi;
} Partial;

static void add_partial(Acc *a, Py_ssize_t len, const Partial *p, Seg *seg) {
    a->n += len; a->rr += p->rr; a->xx += p->xx; a->rx += p->rx; a->dd += p->dd; a->abs_sum += p->abs_sum;
    if (p->abs_max > a->abs_max) a->abs_max = p->abs_max;
    a->rel_sum += p->rel_sum; a->rel_count += (int64_t)p->rel_count;
    if (p->rel_max > a->rel_max) a->rel_max = p->rel_max;
    if (p->dlo < a->dmin) a->dmin = p->dlo;
    if (p->dhi > a->dmax) a->dmax = p->dhi;
    a->side_n[0] += len; a->side_n[1] += len;
    a->side_s1[0] += p->s1r; a->side_s1[1] += p->s1x; a->side_s2[0] += p->rr; a->side_s2[1] += p->xx;
    if (p->lr < a->side_lo[0]) a->side_lo[0] = p->lr;
    if (p->hr > a->side_hi[0]) a->side_hi[0] = p->hr;
    if (p->lx < a->side_lo[1]) a->side_lo[1] = p->lx;
    if (p->hx > a->side_hi[1]) a->side_hi[1] = p->hx;
    seg->rr = p->rr; seg->xx = p->xx; seg->rx = p->rx; seg->dd = p->dd;
}

/* Σr², Σx², Σrx, Σ(x - r)², Σr, Σx of float32 data in float64. The products of widened float32
 * values are exact, so a fused multiply-add gives the same sums as a multiply then an add: this
 * one function may contract (faster at x86-64-v3/v4, the same numbers as the portable build). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=fast")))
#endif
ND_NOINLINE static void exact_sums_f32(const float *r, const float *x, Py_ssize_t len, double *out) {
    double rr = 0, xx = 0, rx = 0, dd = 0, s1r = 0, s1x = 0;
    Py_ssize_t i;
#pragma omp simd reduction(+:rr,xx,rx,dd,s1r,s1x)
    for (i = 0; i < len; i++) {
        double u = r[i], v = x[i], d = v - u;
        rr += u * u; xx += v * v; rx += u * v; dd += d * d; s1r += u; s1x += v;
    }
    out[0] = rr; out[1] = xx; out[2] = rx; out[3] = dd; out[4] = s1r; out[5] = s1x;
}

/* float32 (or float16 widened to float32) all-finite segment, two loops over the L1-resident data:
 * Σr², Σx², Σrx, Σ(x - r)², Σr, Σx in float64 from exactly widened values (exact products; only the
 * float64 rounding of the sums depends on the vector width), then |x - r|, the relative-error
 * quotients and the extremes in float32 over LANES fixed lanes (as kl_segment_f32: the same floats
 * added in the same order at every build level), spilled to float64 every FBLOCK terms per lane.
 * Returns 0, adding nothing, when a value, a difference or a quotient is not finite (the caller
 * then redoes the segment in float64). */
ND_NOINLINE static int fast_segment_f32(const float *r, const float *x, Py_ssize_t len, double eps, Acc *a, Seg *seg) {
    double sums[6];
    exact_sums_f32(r, x, len, sums);
    double rr = sums[0], xx = sums[1], rx = sums[2], dd = sums[3], s1r = sums[4], s1x = sums[5];
    Py_ssize_t i;
    float fas[LANES] = {0}, frs[LANES] = {0}, rm[LANES] = {0};
    float lr[LANES], hr[LANES], lx[LANES], hx[LANES], dlo[LANES], dhi[LANES];
    double das[LANES] = {0}, drs[LANES] = {0};
    int32_t rc[LANES] = {0};
    const float feps = (float)eps;
    int j, rows = 0;
    for (j = 0; j < LANES; j++) {
        lr[j] = lx[j] = dlo[j] = INFINITY;
        hr[j] = hx[j] = dhi[j] = -INFINITY;
    }
#define ND_STAT_LANE(k)                                                                        \
    do {                                                                                       \
        float u = r[i + (k)], v = x[i + (k)], d = v - u, ad = fabsf(d), au = fabsf(u);         \
        fas[k] += ad;                                                                          \
        lr[k] = u < lr[k] ? u : lr[k]; hr[k] = u > hr[k] ? u : hr[k];                          \
        lx[k] = v < lx[k] ? v : lx[k]; hx[k] = v > hx[k] ? v : hx[k];                          \
        dlo[k] = d < dlo[k] ? d : dlo[k]; dhi[k] = d > dhi[k] ? d : dhi[k];                    \
        int32_t above = -(int32_t)(au > feps), ub, qb; /* all ones where |r| > eps */         \
        memcpy(&ub, &au, 4);                                                                   \
        ub = (ub & above) | (0x3F800000 & ~above); /* |r| there, else 1 */                     \
        float den, q;                                                                          \
        memcpy(&den, &ub, 4);                                                                  \
        q = ad / den;                                                                          \
        memcpy(&qb, &q, 4);                                                                    \
        qb &= above; /* the quotient there, else +0 */                                         \
        memcpy(&q, &qb, 4);                                                                    \
        frs[k] += q; rc[k] -= above;                                                           \
        rm[k] = q > rm[k] ? q : rm[k];                                                         \
    } while (0)
    for (i = 0; i + LANES <= len; i += LANES) {
        ND_PREFETCH(r, i + SEG); /* the next segment (exact_sums_f32 read this one) */
        ND_PREFETCH(x, i + SEG);
        for (j = 0; j < LANES; j++) ND_STAT_LANE(j);
        if (++rows == FBLOCK) {
            for (j = 0; j < LANES; j++) {
                das[j] += fas[j]; drs[j] += frs[j];
                fas[j] = frs[j] = 0;
            }
            rows = 0;
        }
    }
    for (j = 0; i + j < len; j++) ND_STAT_LANE(j); /* the tail, lane by lane */
#undef ND_STAT_LANE
    Partial p = {rr, xx, rx, dd, 0, 0, 0, 0, 0, s1r, s1x, INFINITY, -INFINITY, INFINITY, -INFINITY, INFINITY, -INFINITY};
    for (j = 0; j < LANES; j++) {
        p.abs_sum += das[j] + (double)fas[j];
        p.rel_sum += drs[j] + (double)frs[j]; p.rel_count += rc[j];
        if (dhi[j] > p.abs_max) p.abs_max = dhi[j]; /* max |x - r| = max(max d, -min d) */
        if (-dlo[j] > p.abs_max) p.abs_max = -dlo[j];
        if (rm[j] > p.rel_max) p.rel_max = rm[j];
        if (lr[j] < p.lr) p.lr = lr[j];
        if (hr[j] > p.hr) p.hr = hr[j];
        if (lx[j] < p.lx) p.lx = lx[j];
        if (hx[j] > p.hx) p.hx = hx[j];
        if (dlo[j] < p.dlo) p.dlo = dlo[j];
        if (dhi[j] > p.dhi) p.dhi = dhi[j];
    }
    if (!isfinite(rr + xx + dd + p.rel_sum + p.abs_max + p.abs_sum)) return 0;
    add_partial(a, len, &p, seg);
    return 1;
}

/* float64 all-finite segment; returns 0, adding nothing, when a value or a square is not finite. */
ND_NOINLINE static int fast_segment(const double *r, const double *x, Py_ssize_t len, double eps, Acc *a, Seg *seg) {
    double rr = 0, xx = 0, rx = 0, dd = 0, as = 0, am = 0, rs = 0, rm = 0, rc = 0, s1r = 0, s1x = 0;
    double lr = INFINITY, hr = -INFINITY, lx = INFINITY, hx = -INFINITY, dlo = INFINITY, dhi = -INFINITY;
    Py_ssize_t i;
#pragma omp simd reduction(+:rr,xx,rx,dd,as,rs,rc,s1r,s1x) reduction(max:am,rm,hr,hx,dhi) reduction(min:lr,lx,dlo)
    for (i = 0; i < len; i++) {
        double u = r[i], v = x[i], d = v - u, ad = fabs(d), au = fabs(u);
        rr += u * u; xx += v * v; rx += u * v; dd += d * d; as += ad; s1r += u; s1x += v;
        am = ad > am ? ad : am;
        lr = u < lr ? u : lr; hr = u > hr ? u : hr;
        lx = v < lx ? v : lx; hx = v > hx ? v : hx;
        dlo = d < dlo ? d : dlo; dhi = d > dhi ? d : dhi;
        double big = (double)(au > eps);
        double q = big * (ad / (au + (1.0 - big)));
        rs += q; rc += big;
        rm = q > rm ? q : rm;
    }
    Partial p = {rr, xx, rx, dd, as, am, rs, rc, rm, s1r, s1x, lr, hr, lx, hx, dlo, dhi};
    if (!isfinite(rr + xx + dd + rs + am)) return 0;
    add_partial(a, len, &p, seg);
    return 1;
}

static void side_add(Acc *a, int s, double v) {
    if (isnan(v)) { a->side_nan[s]++; return; }
    if (isinf(v)) { a->side_inf[s]++; return; }
    a->side_n[s]++; a->side_s1[s] += v; a->side_s2[s] += v * v;
    if (v < a->side_lo[s]) a->side_lo[s] = v;
    if (v > a->side_hi[s]) a->side_hi[s] = v;
}

/* Careful scalar path for a segment holding NaN/Inf (or overflowing squares). */
static void slow_segment(const double *r, const double *x, Py_ssize_t len, double eps, Acc *a, Seg *seg) {
    Py_ssize_t i;
    seg->rr = seg->xx = seg->rx = seg->dd = 0;
    for (i = 0; i < len; i++) {
        double u = r[i], v = x[i];
        int fu = isfinite(u), fv = isfinite(v);
        side_add(a, 0, u);
        side_add(a, 1, v);
        double cu = fu ? u : 0.0, cv = fv ? v : 0.0, cd = cv - cu;
        seg->rr += cu * cu; seg->xx += cv * cv; seg->rx += cu * cv; seg->dd += cd * cd;
        if (!(fu && fv)) continue;
        double d = v - u, ad = fabs(d), au = fabs(u);
        a->n++; a->rr += u * u; a->xx += v * v; a->rx += u * v; a->dd += d * d; a->abs_sum += ad;
        if (ad > a->abs_max) a->abs_max = ad;
        if (d < a->dmin) a->dmin = d;
        if (d > a->dmax) a->dmax = d;
        if (au > eps) {
            double q = ad / au;
            a->rel_sum += q; a->rel_count++;
            if (q > a->rel_max) a->rel_max = q;
        }
    }
}

typedef struct {
    const void *r, *x;
    int kr, kx;
    Py_ssize_t size;
} Pair;

static int get_pair(PyObject *ro, PyObject *xo, int kr, int kx, Py_buffer *br, Py_buffer *bx, Pair *p) {
    static const int item[3] = {8, 4, 2};
    if (kr < 0 || kr > 2 || kx < 0 || kx > 2) {
        PyErr_SetString(PyExc_ValueError, "unknown element kind");
        return -1;
    }
    if (PyObject_GetBuffer(ro, br, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (PyObject_GetBuffer(xo, bx, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(br);
        return -1;
    }
    if (br->len % item[kr] || bx->len % item[kx] || br->len / item[kr] != bx->len / item[kx]) {
        PyBuffer_Release(br);
        PyBuffer_Release(bx);
        PyErr_SetString(PyExc_ValueError, "buffers hold different element counts");
        return -1;
    }
    p->r = br->buf; p->x = bx->buf; p->kr = kr; p->kx = kx; p->size = br->len / item[kr];
    return 0;
}

/* Widen one segment into a float64 buffer. */
static void widen(const void *src, int kind, Py_ssize_t start, Py_ssize_t len, double *out) {
    Py_ssize_t i;
    if (kind == K_F64) {
        memcpy(out, (const double *)src + start, (size_t)len * sizeof(double));
    } else if (kind == K_F32) {
        const float *s = (const float *)src + start;
        for (i = 0; i < len; i++) out[i] = s[i];
    } else {
        const uint16_t *s = (const uint16_t *)src + start;
        for (i = 0; i < len; i++) out[i] = half_table[s[i]];
    }
}

/* float32 view of one segment of float32 or float16 data (float16 widened exactly into out). */
static const float *as_f32(const void *src, int kind, Py_ssize_t start, Py_ssize_t len, float *out) {
    if (kind == K_F32) return (const float *)src + start;
    const uint16_t *s = (const uint16_t *)src + start;
    for (Py_ssize_t i = 0; i < len; i++) out[i] = half_table[s[i]];
    return out;
}

/* The pass-1 sums of one pair, segment by segment; with ``ch`` (4 x channels, added to) also the
 * per-channel sums, segments then ending at channel boundaries (``inner`` elements per channel block,
 * the pair starting ``offset`` elements into the tensor). Called without the GIL. */
static void pair_sums(const Pair *p, double eps, double *ch, Py_ssize_t channels, Py_ssize_t inner,
                      Py_ssize_t offset, Acc *a) {
    memset(a, 0, sizeof *a);
    a->dmin = a->side_lo[0] = a->side_lo[1] = INFINITY;
    a->dmax = a->side_hi[0] = a->side_hi[1] = -INFINITY;
    a->count = p->size;
    const int narrow = p->kr != K_F64 && p->kx != K_F64;
    double rbuf[SEG], xbuf[SEG];
    float rf[SEG], xf[SEG];
    Py_ssize_t pos = 0;
    while (pos < p->size) {
        Py_ssize_t len = p->size - pos < SEG ? p->size - pos : SEG, c = 0;
        if (ch) {
            Py_ssize_t flat = offset + pos, left = inner - flat % inner;
            c = (flat / inner) % channels;
            if (left < len) len = left;
        }
        Seg seg;
        int done = narrow && fast_segment_f32(as_f32(p->r, p->kr, pos, len, rf), as_f32(p->x, p->kx, pos, len, xf),
                                              len, eps, a, &seg);
        if (!done) {
            const double *r, *x;
            if (p->kr == K_F64) r = (const double *)p->r + pos; else { widen(p->r, p->kr, pos, len, rbuf); r = rbuf; }
            if (p->kx == K_F64) x = (const double *)p->x + pos; else { widen(p->x, p->kx, pos, len, xbuf); x = xbuf; }
            if (!fast_segment(r, x, len, eps, a, &seg)) slow_segment(r, x, len, eps, a, &seg);
        }
        if (ch) {
            ch[c] += seg.rr; ch[channels + c] += seg.xx; ch[2 * channels + c] += seg.dd; ch[3 * channels + c] += seg.rx;
        }
        pos += len;
    }
}

/* stats(ref, tgt, kind_ref, kind_tgt, eps, channel_sums or None, channels, inner, offset)
 * channel_sums: float64, 4 x channels (Σr², Σx², Σ(x-r)², Σrx per channel), added to. */
static PyObject *stats(PyObject *self, PyObject *args) {
    PyObject *ro, *xo, *co;
    int kr, kx;
    double eps;
    Py_ssize_t channels, inner, offset;
    if (!PyArg_ParseTuple(args, "OOiidOnnn", &ro, &xo, &kr, &kx, &eps, &co, &channels, &inner, &offset)) return NULL;
    Py_buffer br, bx, bc;
    Pair p;
    if (get_pair(ro, xo, kr, kx, &br, &bx, &p) < 0) return NULL;
    double *ch = NULL;
    int has_ch = co != Py_None && channels > 0 && inner > 0;
    if (has_ch) {
        if (PyObject_GetBuffer(co, &bc, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) goto fail_pair;
        if (bc.len < (Py_ssize_t)(4 * channels * sizeof(double))) {
            PyBuffer_Release(&bc);
            PyErr_SetString(PyExc_ValueError, "channel buffer too small");
            goto fail_pair;
        }
        ch = (double *)bc.buf;
    }
    Acc a;
    Py_BEGIN_ALLOW_THREADS
    pair_sums(&p, eps, ch, channels, inner, offset, &a);
    Py_END_ALLOW_THREADS
    if (has_ch) PyBuffer_Release(&bc);
    PyBuffer_Release(&br);
    PyBuffer_Release(&bx);
    return Py_BuildValue("{s:L,s:L,s:L,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,"
                         "s:(LLLdddd),s:(LLLdddd)}",
                         "count", (long long)a.count, "n", (long long)a.n, "rel_count", (long long)a.rel_count,
                         "rr", a.rr, "xx", a.xx, "rx", a.rx, "dd", a.dd, "abs_sum", a.abs_sum, "abs_max", a.abs_max,
                         "rel_sum", a.rel_sum, "rel_max", a.rel_max, "dmin", a.dmin, "dmax", a.dmax,
                         "ref", (long long)a.side_n[0], (long long)a.side_nan[0], (long long)a.side_inf[0],
                         a.side_s1[0], a.side_s2[0], a.side_lo[0], a.side_hi[0],
                         "tgt", (long long)a.side_n[1], (long long)a.side_nan[1], (long long)a.side_inf[1],
                         a.side_s1[1], a.side_s2[1], a.side_lo[1], a.side_hi[1]);
fail_pair:
    PyBuffer_Release(&br);
    PyBuffer_Release(&bx);
    return NULL;
}

/* ---- pass 2: KL ---- */

typedef struct { double sp, sq, cross; } KlAcc;

/* float32 KL terms of an all-finite float32/float16 segment: p, q, p/q and the log in float32, in
 * LANES fixed lanes (element i in lane i % LANES, each lane summed in element order: no reduction
 * the compiler may reorder, so every build level adds the same floats in the same order), each
 * lane's float32 partial sum spilled into a float64 lane every FBLOCK elements of the lane. */
ND_NOINLINE static void kl_segment_f32(const float *r, const float *x, Py_ssize_t len, const float *norm, float floor_,
                                       KlAcc *k) {
    float fsp[LANES] = {0}, fsq[LANES] = {0}, fcr[LANES] = {0};
    double dsp[LANES] = {0}, dsq[LANES] = {0}, dcr[LANES] = {0};
    const float rlo = norm[0], rs = norm[1], xlo = norm[2], xs = norm[3];
    Py_ssize_t i = 0;
    int j, rows = 0;
#define ND_KL_LANE(k)                                                                          \
    do {                                                                                       \
        float q = (r[i + (k)] - rlo) * rs, pv = (x[i + (k)] - xlo) * xs;                       \
        q = q > floor_ ? q : floor_;                                                           \
        pv = pv > floor_ ? pv : floor_;                                                        \
        fsp[k] += pv;                                                                          \
        fsq[k] += q;                                                                           \
        fcr[k] += pv * fast_logf(pv / q);                                                      \
    } while (0)
    for (; i + LANES <= len; i += LANES) {
        ND_PREFETCH(r, i + PF_DIST);
        ND_PREFETCH(x, i + PF_DIST);
        for (j = 0; j < LANES; j++) ND_KL_LANE(j);
        if (++rows == FBLOCK) {
            for (j = 0; j < LANES; j++) {
                dsp[j] += fsp[j]; dsq[j] += fsq[j]; dcr[j] += fcr[j];
                fsp[j] = fsq[j] = fcr[j] = 0;
            }
            rows = 0;
        }
    }
    for (j = 0; i + j < len; j++) ND_KL_LANE(j); /* the tail, lane by lane */
#undef ND_KL_LANE
    double sp = 0, sq = 0, cross = 0;
    for (j = 0; j < LANES; j++) {
        sp += dsp[j] + (double)fsp[j]; sq += dsq[j] + (double)fsq[j]; cross += dcr[j] + (double)fcr[j];
    }
    k->sp += sp; k->sq += sq; k->cross += cross;
}

/* float64 KL terms (float64 data, or pairs with NaN/Inf to skip). */
ND_NOINLINE static void kl_segment(const double *r, const double *x, Py_ssize_t len, const double *norm, double floor_,
                       KlAcc *k) {
    double sp = 0, sq = 0, cross = 0;
    const double rlo = norm[0], rs = norm[1], xlo = norm[2], xs = norm[3];
    Py_ssize_t i;
#pragma omp simd reduction(+:sp,sq,cross)
    for (i = 0; i < len; i++) {
        double u = r[i], v = x[i];
        double fin = (double)((u - u == 0.0) & (v - v == 0.0));
        double q = (u - rlo) * rs, pv = (v - xlo) * xs;
        q = q > floor_ ? q : floor_;
        pv = pv > floor_ ? pv : floor_;
        q = fin > 0 ? q : 1.0;
        pv = fin > 0 ? pv : 1.0;
        double term = pv * fast_log(pv / q);
        sp += fin * pv;
        sq += fin * q;
        cross += fin * term;
    }
    k->sp += sp; k->sq += sq; k->cross += cross;
}

/* kl(ref, tgt, kind_ref, kind_tgt, ref_lo, ref_scale, tgt_lo, tgt_scale, floor, finite) -> (sp, sq, cross)
 * p = max((tgt - tgt_lo) * tgt_scale, floor), q likewise from ref; pairs with a NaN/Inf skipped.
 * ``finite`` = 1 promises no NaN/Inf (known from stats()): float32/float16 data then take the float32 loop. */
static PyObject *kl(PyObject *self, PyObject *args) {
    PyObject *ro, *xo;
    int kr, kx;
    int finite;
    double norm[4], floor_;
    if (!PyArg_ParseTuple(args, "OOiidddddp", &ro, &xo, &kr, &kx, &norm[0], &norm[1], &norm[2], &norm[3], &floor_,
                          &finite))
        return NULL;
    Py_buffer br, bx;
    Pair p;
    if (get_pair(ro, xo, kr, kx, &br, &bx, &p) < 0) return NULL;
    KlAcc k = {0, 0, 0};
    Py_BEGIN_ALLOW_THREADS
    double rbuf[SEG], xbuf[SEG];
    float rf[SEG], xf[SEG];
    Py_ssize_t pos = 0;
    if (finite && p.kr != K_F64 && p.kx != K_F64) {
        const float normf[4] = {(float)norm[0], (float)norm[1], (float)norm[2], (float)norm[3]};
        for (; pos < p.size; pos += SEG) {
            Py_ssize_t len = p.size - pos < SEG ? p.size - pos : SEG;
            kl_segment_f32(as_f32(p.r, p.kr, pos, len, rf), as_f32(p.x, p.kx, pos, len, xf), len, normf,
                           (float)floor_, &k);
        }
    }
    while (pos < p.size) {
        Py_ssize_t len = p.size - pos < SEG ? p.size - pos : SEG;
        const double *r, *x;
        if (p.kr == K_F64) r = (const double *)p.r + pos; else { widen(p.r, p.kr, pos, len, rbuf); r = rbuf; }
        if (p.kx == K_F64) x = (const double *)p.x + pos; else { widen(p.x, p.kx, pos, len, xbuf); x = xbuf; }
        kl_segment(r, x, len, norm, floor_, &k);
        pos += len;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&br);
    PyBuffer_Release(&bx);
    return Py_BuildValue("(ddd)", k.sp, k.sq, k.cross);
}

/* histograms(ref, tgt, kind_ref, kind_tgt, lo, hi, err_lo, err_hi, step, counts) -> pairs sampled
 * Adds to counts (int64, 3 x bins: reference, target, target - reference) one finite pair in step,
 * taken as evenly spaced runs of HIST_RUN contiguous pairs;
 * values bin over [lo, hi] (err over [err_lo, err_hi]) as numpy.histogram does, the top edge included. */
static inline void bin_add(int64_t *c, Py_ssize_t bins, double v, double lo, double scale) {
    double f = (v - lo) * scale;
    if (!(f >= 0.0)) { if (f > -1e-9 * (double)bins) c[0]++; return; }
    Py_ssize_t i = (Py_ssize_t)f;
    if (i >= bins) { if (f <= (double)bins * (1 + 1e-12)) c[bins - 1]++; return; }
    c[i]++;
}

static double element(const void *buf, int kind, Py_ssize_t i) {
    if (kind == K_F64) return ((const double *)buf)[i];
    if (kind == K_F32) return ((const float *)buf)[i];
    return half_table[((const uint16_t *)buf)[i]];
}

static PyObject *histograms(PyObject *self, PyObject *args) {
    PyObject *ro, *xo, *co;
    int kr, kx;
    double lo, hi, elo, ehi;
    Py_ssize_t step;
    if (!PyArg_ParseTuple(args, "OOiiddddnO", &ro, &xo, &kr, &kx, &lo, &hi, &elo, &ehi, &step, &co)) return NULL;
    Py_buffer br, bx, bc;
    Pair p;
    if (get_pair(ro, xo, kr, kx, &br, &bx, &p) < 0) return NULL;
    if (PyObject_GetBuffer(co, &bc, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&br);
        PyBuffer_Release(&bx);
        return NULL;
    }
    Py_ssize_t bins = bc.len / (Py_ssize_t)(3 * sizeof(int64_t)), taken = 0;
    if (bins > 0 && hi > lo && ehi > elo) {
        int64_t *c = (int64_t *)bc.buf;
        double scale = (double)bins / (hi - lo), escale = (double)bins / (ehi - elo);
        if (step < 1) step = 1;
        Py_BEGIN_ALLOW_THREADS
        /* Runs of HIST_RUN contiguous pairs, one run every step * HIST_RUN pairs: the same number
         * of pairs as every step-th one, evenly spread, but read as whole cache lines. */
        static const int item[3] = {8, 4, 2};
        for (Py_ssize_t start = 0; start < p.size; start += step * HIST_RUN) {
            Py_ssize_t stop = start + HIST_RUN < p.size ? start + HIST_RUN : p.size, next = start + step * HIST_RUN;
            for (int line = 0; line < HIST_RUN * item[p.kr]; line += 64) /* the next run's lines */
                ND_PREFETCH((const char *)p.r, next * item[p.kr] + line);
            for (int line = 0; line < HIST_RUN * item[p.kx]; line += 64)
                ND_PREFETCH((const char *)p.x, next * item[p.kx] + line);
            for (Py_ssize_t i = start; i < stop; i++) {
                double u = element(p.r, p.kr, i), v = element(p.x, p.kx, i);
                if (!(isfinite(u) && isfinite(v))) continue;
                taken++;
                bin_add(c, bins, u, lo, scale);
                bin_add(c + bins, bins, v, lo, scale);
                bin_add(c + 2 * bins, bins, v - u, elo, escale);
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&bc);
    PyBuffer_Release(&br);
    PyBuffer_Release(&bx);
    return PyLong_FromSsize_t(taken);
}

/* log_many(values) -> list of the float64 kernel log of each v: exposed for tests of the approximation. */
static PyObject *log_many(PyObject *self, PyObject *seq) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of floats");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast), i;
    PyObject *out = PyList_New(n);
    for (i = 0; out && i < n; i++) {
        double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1.0 && PyErr_Occurred()) { Py_CLEAR(out); break; }
        PyList_SET_ITEM(out, i, PyFloat_FromDouble(fast_log(v)));
    }
    Py_DECREF(fast);
    return out;
}

/* log_many_f32(values) -> list of the float32 kernel log of each v (for tests). */
static PyObject *log_many_f32(PyObject *self, PyObject *seq) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of floats");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast), i;
    PyObject *out = PyList_New(n);
    for (i = 0; out && i < n; i++) {
        double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1.0 && PyErr_Occurred()) { Py_CLEAR(out); break; }
        PyList_SET_ITEM(out, i, PyFloat_FromDouble((double)fast_logf((float)v)));
    }
    Py_DECREF(fast);
    return out;
}

/* ---- many pairs at once (netdiff.dataset: every planned pair of one sample in one call) ---- */

#define PAIR_FIELDS 10 /* taken, rr, xx, rx, dd, ref finite n, ref Σr², ref min, ref max, NaN/Inf count */

/* The kernel's element kind of a buffer format ("d", "f", "e": native float64/float32/float16), or -1. */
static int format_kind(const Py_buffer *b) {
    const char *f = b->format;
    if (f == NULL || f[0] == 0 || f[1] != 0) return -1;
    if (f[0] == 'd' && b->itemsize == 8) return K_F64;
    if (f[0] == 'f' && b->itemsize == 4) return K_F32;
    if (f[0] == 'e' && b->itemsize == 2) return K_F16;
    return -1;
}

/* A C-contiguous float buffer of ``o`` (its kind, or -1 with no buffer held and no error set). */
static int float_buffer(PyObject *o, Py_buffer *b) {
    if (o == Py_None || PyObject_GetBuffer(o, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return -1;
    }
    int kind = format_kind(b);
    if (kind < 0) PyBuffer_Release(b);
    return kind;
}

/* stats_pairs(refs, tgts, eps, out) -> pairs taken
 * refs, tgts: lists of the same length n (buffers or None); out: writable float64 buffer of n x PAIR_FIELDS.
 * A pair is taken when both sides are C-contiguous native float64/float32/float16 buffers of the same,
 * non-zero element count: out[i] = (1, Σr², Σx², Σrx, Σ(x-r)², the reference's finite count, Σr², min and
 * max over its finite values, the NaN/Inf count of both sides), the sums of stats() (bit-identical: the
 * same segment loops). Otherwise out[i][0] = 0 and the rest is left as it was (the caller measures it). */
static PyObject *stats_pairs(PyObject *self, PyObject *args) {
    PyObject *refs, *tgts, *oo;
    double eps;
    if (!PyArg_ParseTuple(args, "O!O!dO", &PyList_Type, &refs, &PyList_Type, &tgts, &eps, &oo)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(refs), i, taken = 0;
    if (PyList_GET_SIZE(tgts) != n) {
        PyErr_SetString(PyExc_ValueError, "refs and tgts differ in length");
        return NULL;
    }
    Py_buffer bo;
    if (PyObject_GetBuffer(oo, &bo, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (format_kind(&bo) != K_F64 || bo.len < (Py_ssize_t)(n * PAIR_FIELDS * sizeof(double))) {
        PyBuffer_Release(&bo);
        PyErr_SetString(PyExc_ValueError, "out must be a float64 buffer of len(refs) x 10");
        return NULL;
    }
    double *out = (double *)bo.buf;
    Py_buffer *views = PyMem_Calloc(n ? 2 * (size_t)n : 1, sizeof(Py_buffer));
    Pair *pairs = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Pair));
    char *held = PyMem_Calloc(n ? (size_t)n : 1, 1);
    if (!views || !pairs || !held) {
        PyMem_Free(views); PyMem_Free(pairs); PyMem_Free(held);
        PyBuffer_Release(&bo);
        return PyErr_NoMemory();
    }
    static const int item[3] = {8, 4, 2};
    for (i = 0; i < n; i++) {
        out[i * PAIR_FIELDS] = 0.0;
        Py_buffer *br = &views[2 * i], *bx = &views[2 * i + 1];
        int kr = float_buffer(PyList_GET_ITEM(refs, i), br);
        if (kr < 0) continue;
        int kx = float_buffer(PyList_GET_ITEM(tgts, i), bx);
        if (kx < 0) { PyBuffer_Release(br); continue; }
        Py_ssize_t size = br->len / item[kr];
        if (size == 0 || bx->len / item[kx] != size) { PyBuffer_Release(br); PyBuffer_Release(bx); continue; }
        pairs[i].r = br->buf; pairs[i].x = bx->buf; pairs[i].kr = kr; pairs[i].kx = kx; pairs[i].size = size;
        held[i] = 1;
        taken++;
    }
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < n; i++) {
        if (!held[i]) continue;
        Acc a;
        pair_sums(&pairs[i], eps, NULL, 0, 0, 0, &a);
        double *o = out + i * PAIR_FIELDS;
        o[0] = 1.0; o[1] = a.rr; o[2] = a.xx; o[3] = a.rx; o[4] = a.dd;
        o[5] = (double)a.side_n[0]; o[6] = a.side_s2[0]; o[7] = a.side_lo[0]; o[8] = a.side_hi[0];
        o[9] = (double)(a.side_nan[0] + a.side_inf[0] + a.side_nan[1] + a.side_inf[1]);
    }
    Py_END_ALLOW_THREADS
    for (i = 0; i < n; i++) {
        if (!held[i]) continue;
        PyBuffer_Release(&views[2 * i]);
        PyBuffer_Release(&views[2 * i + 1]);
    }
    PyMem_Free(views); PyMem_Free(pairs); PyMem_Free(held);
    PyBuffer_Release(&bo);
    return PyLong_FromSsize_t(taken);
}

static PyMethodDef methods[] = {
    {"stats", stats, METH_VARARGS, "Fused pass-1 sums of a reference/target pair."},
    {"kl", kl, METH_VARARGS, "msaccucmp KL sums (sp, sq, cross) of a pair."},
    {"histograms", histograms, METH_VARARGS, "Sampled value and error histograms of a pair."},
    {"log_many", log_many, METH_O, "The kernel's log approximation (for tests)."},
    {"log_many_f32", log_many_f32, METH_O, "The float32 kernel's log approximation (for tests)."},
    {"stats_pairs", stats_pairs, METH_VARARGS, "Pass-1 sums of many reference/target pairs in one call."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastmetrics", NULL, -1, methods};

static int cpu_ok(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
#if defined(__AVX512F__)
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")))
        return 0;
#endif
#if defined(__AVX2__)
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
#endif
#if defined(__SSE4_2__)
    if (!(__builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt"))) return 0;
#endif
#endif
    return 1;
}

__attribute__((noinline)) static void fill_half_table(void) {
    for (uint32_t h = 0; h < 65536; h++) half_table[h] = half_to_float((uint16_t)h);
}

PyMODINIT_FUNC PyInit__fastmetrics(void) {
    if (!cpu_ok()) {
        PyErr_SetString(PyExc_ImportError, "netdiff._fastmetrics was built for a CPU with more vector "
                        "instructions than this one; rebuild it here (pip install -e .)");
        return NULL;
    }
    fill_half_table();
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddStringConstant(m, "BUILD_LEVEL", ND_LEVEL) < 0 ||
              PyModule_AddStringConstant(m, "SOURCE_DIGEST", ND_SOURCE_DIGEST) < 0))
        Py_CLEAR(m);
    return m;
}
