
/*
 * The state file (conductor_state_file PATH interval=T): the zone's totals,
 * windows, budgets and cooldowns across a restart.  A reload keeps the zone
 * itself; a restart starts from a new one, filled from the file.
 *
 * Writing: every interval one worker (a lease in the zone) copies the
 * persistent fields of the configuration's nodes into buffers of its own,
 * a few hundred nodes per hold of the zone lock, and a thread of nginx's
 * pool formats them as JSON, writes PATH.tmp.PID, fsyncs it and renames it
 * over PATH, so that a reader sees the old file or the new one, whole.  A
 * worker that exits writes once more, synchronously: the last one to exit
 * has the final totals.
 *
 * Loading: when the zone is new, in the master, after every node of the
 * configuration exists.  The file is read and checked whole before anything
 * is applied: a file that is not what this module writes is reported in one
 * line and ignored.  Nodes are matched by name; what the configuration no
 * longer has is dropped.  Times are checked against now: a cooldown never
 * lasts beyond conductor_cooldown max=, a window or budget period that has
 * not begun yet is dropped.
 *
 * The file holds names and counters, never a secret.
 */


#include "ngx_http_conductor.h"

#include <jansson.h>


#define NGX_HTTP_CONDUCTOR_STATE_VERSION   1

/*
 * The most one node takes in the file besides its name: about 40 numbers
 * of at most 20 digits with every member name spelled, under 1.7 KB.
 */
#define NGX_HTTP_CONDUCTOR_STATE_NODE_LEN  2048

/* a larger file was not written by this module */
#define NGX_HTTP_CONDUCTOR_STATE_MAX_SIZE  (1024 * 1024 * 1024)

/* the longest name a node can have (shm.c makes them in 512 bytes) */
#define NGX_HTTP_CONDUCTOR_STATE_NAME_MAX  512

/* a failure to write is logged again after this long at the earliest */
#define NGX_HTTP_CONDUCTOR_STATE_QUIET     60000

/* nodes copied in one hold of the zone lock: other workers wait less */
#define NGX_HTTP_CONDUCTOR_STATE_CHUNK     256

#define NGX_HTTP_CONDUCTOR_STATE_NTOKENS   5


/* the persistent part of one node, as the file has it */
typedef struct {
    ngx_http_conductor_window_t       win[NGX_HTTP_CONDUCTOR_NLIMITS];
    ngx_http_conductor_money_t        spent[NGX_HTTP_CONDUCTOR_NPERIODS];
    uint64_t                          period[NGX_HTTP_CONDUCTOR_NPERIODS];

    uint64_t                          requests;
    uint64_t                          responses;
    uint64_t                          estimated;
    uint64_t                          unpriced;
    uint64_t                          ttfb_sum;
    uint64_t                          ttfb_ewma;
    uint64_t                          cooldown_until;
    uint64_t                          disabled;
    uint64_t                          backoff;
    int64_t                           remaining_requests;
    int64_t                           remaining_tokens;
    uint64_t                          errors[NGX_HTTP_CONDUCTOR_NERRORS];
    uint64_t                          tokens[NGX_HTTP_CONDUCTOR_STATE_NTOKENS];
    ngx_http_conductor_money_t        cost;

    u_char                           *name;
    size_t                            len;
} ngx_http_conductor_state_rec_t;


/* a number member of a node: min 0 for counters, -1 for "unknown" */
typedef struct {
    ngx_str_t                         name;
    size_t                            offset;    /* in the record */
    int64_t                           min;
} ngx_http_conductor_state_field_t;


/* an object of counters by name: errors by class, tokens by kind */
typedef struct {
    ngx_str_t                         name;
    size_t                            offset;
    const char                      **names;
    ngx_uint_t                        n;
} ngx_http_conductor_state_group_t;


/* what a load has found so far */
typedef struct {
    ngx_http_conductor_main_conf_t   *cmcf;
    uint64_t                          now_ms;
    time_t                            now;
    u_char                           *names;     /* the next name's place */
    ngx_uint_t                        clamped;   /* times in the future */
    u_char                           *at;        /* in msg, after "node N" */
    u_char                            msg[256];  /* what is wrong */
} ngx_http_conductor_state_load_t;


/* one worker's writer */
typedef struct {
    ngx_http_conductor_main_conf_t   *cmcf;
    ngx_event_t                       timer;
#if (NGX_THREADS)
    ngx_thread_task_t                *task;
#endif
    u_char                           *tmp;       /* PATH.tmp.PID */
    u_char                           *dir;       /* fsynced after rename */

    /* the configuration's nodes, and their snapshot; then the file: a
     * thread owns recs and out while busy */
    ngx_http_conductor_node_t       **nodes;
    ngx_http_conductor_state_rec_t   *recs;
    ngx_uint_t                        nrecs;
    u_char                           *out;
    size_t                            out_len;
    uint64_t                          written;   /* epoch ms, snapshot */

    /* what the last write did */
    const char                       *failed;    /* the call, NULL: none */
    u_char                           *failed_name;
    ngx_err_t                         err;
    uint64_t                          snapshot_us;
    uint64_t                          locked_us; /* the longest lock hold */
    uint64_t                          format_us;
    uint64_t                          write_us;
    uint64_t                          logged;    /* last error, epoch ms */

    unsigned                          busy:1;    /* a thread has it */
    unsigned                          threaded:1;  /* the last one did */
    unsigned                          failing:1;
} ngx_http_conductor_state_t;


static ngx_int_t ngx_http_conductor_state_read(ngx_http_conductor_main_conf_t
    *cmcf, ngx_log_t *log, u_char **buf, size_t *len);
static ngx_int_t ngx_http_conductor_state_parse(
    ngx_http_conductor_state_load_t *ld, json_t *root,
    ngx_http_conductor_state_rec_t *recs);
static ngx_int_t ngx_http_conductor_state_parse_node(
    ngx_http_conductor_state_load_t *ld, json_t *node,
    ngx_http_conductor_state_rec_t *r);
static ngx_int_t ngx_http_conductor_state_parse_windows(
    ngx_http_conductor_state_load_t *ld, json_t *obj,
    ngx_http_conductor_state_rec_t *r);
static ngx_int_t ngx_http_conductor_state_parse_spend(
    ngx_http_conductor_state_load_t *ld, json_t *obj,
    ngx_http_conductor_state_rec_t *r);
static ngx_int_t ngx_http_conductor_state_wrong(
    ngx_http_conductor_state_load_t *ld, const char *fmt, ...);
static ngx_int_t ngx_http_conductor_state_money(json_t *v,
    ngx_http_conductor_money_t *m);
static ngx_int_t ngx_http_conductor_state_name(json_t *v, u_char *dst,
    size_t *len);
static int ngx_libc_cdecl ngx_http_conductor_state_cmp(const void *one,
    const void *two);
static void ngx_http_conductor_state_save(ngx_http_conductor_state_rec_t *r,
    ngx_http_conductor_node_t *n);
static void ngx_http_conductor_state_restore(ngx_http_conductor_node_t *n,
    ngx_http_conductor_state_rec_t *r);

static void ngx_http_conductor_state_timer(ngx_event_t *ev);
static ngx_int_t ngx_http_conductor_state_snapshot(
    ngx_http_conductor_state_t *st, ngx_uint_t lease);
static void ngx_http_conductor_state_post(ngx_http_conductor_state_t *st);
#if (NGX_THREADS)
static void ngx_http_conductor_state_thread(void *data, ngx_log_t *log);
static void ngx_http_conductor_state_done(ngx_event_t *ev);
#endif
static void ngx_http_conductor_state_job(ngx_http_conductor_state_t *st);
static void ngx_http_conductor_state_format(ngx_http_conductor_state_t *st);
static u_char *ngx_http_conductor_state_node(u_char *p,
    ngx_http_conductor_state_rec_t *r);
static u_char *ngx_http_conductor_state_num(u_char *p, uint64_t v);
static u_char *ngx_http_conductor_state_cost(u_char *p,
    ngx_http_conductor_money_t m);
static void ngx_http_conductor_state_write(ngx_http_conductor_state_t *st);
static void ngx_http_conductor_state_report(ngx_http_conductor_state_t *st,
    ngx_uint_t exiting);
static uint64_t ngx_http_conductor_state_usec(void);


/* the status report's names, so that the file reads like it */

static const char  *ngx_http_conductor_state_limit_names[] = {
    "rpm", "tpm", "rph", "tph", "rpd", "tpd"
};

static const char  *ngx_http_conductor_state_period_names[] = {
    "day", "month", "total"
};

static const char  *ngx_http_conductor_state_error_names[] = {
    "4xx", "429", "5xx", "timeout", "connect", "stream_cut", "stream_timeout"
};

static const char  *ngx_http_conductor_state_token_names[] = {
    "prompt", "completion", "cached", "cache_creation", "reasoning"
};

/* a class added to the header needs its name here: the build stops */
typedef char  ngx_http_conductor_state_errors_named_t[
    (sizeof(ngx_http_conductor_state_error_names) / sizeof(char *)
     == NGX_HTTP_CONDUCTOR_NERRORS) ? 1 : -1];


#define ngx_http_conductor_state_field(name, min)                            \
    { ngx_string(#name), offsetof(ngx_http_conductor_state_rec_t, name), min }

static ngx_http_conductor_state_field_t  ngx_http_conductor_state_fields[] = {
    ngx_http_conductor_state_field(requests, 0),
    ngx_http_conductor_state_field(responses, 0),
    ngx_http_conductor_state_field(estimated, 0),
    ngx_http_conductor_state_field(unpriced, 0),
    ngx_http_conductor_state_field(ttfb_sum, 0),
    ngx_http_conductor_state_field(ttfb_ewma, 0),
    ngx_http_conductor_state_field(cooldown_until, 0),
    ngx_http_conductor_state_field(disabled, 0),
    ngx_http_conductor_state_field(backoff, 0),
    ngx_http_conductor_state_field(remaining_requests, -1),
    ngx_http_conductor_state_field(remaining_tokens, -1),
    { ngx_null_string, 0, 0 }
};

static ngx_http_conductor_state_group_t  ngx_http_conductor_state_groups[] = {
    { ngx_string("errors"),
      offsetof(ngx_http_conductor_state_rec_t, errors),
      ngx_http_conductor_state_error_names, NGX_HTTP_CONDUCTOR_NERRORS },
    { ngx_string("tokens"),
      offsetof(ngx_http_conductor_state_rec_t, tokens),
      ngx_http_conductor_state_token_names, NGX_HTTP_CONDUCTOR_STATE_NTOKENS },
    { ngx_null_string, 0, NULL, 0 }
};


/* the gateway's own node is not in the tree: it has a name in the file */
static ngx_str_t  ngx_http_conductor_state_gateway = ngx_string("gateway");

/* this process's writer, for exit_process */
static ngx_http_conductor_state_t  *ngx_http_conductor_state;


/* conductor_state_file PATH [interval=TIME] [thread_pool=NAME] */

char *
ngx_http_conductor_state_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_conductor_main_conf_t *cmcf = conf;

    ngx_int_t    rc;
    ngx_str_t   *value, pool;
    ngx_uint_t   i;

    if (cmcf->state_file.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    cmcf->state_file = value[1];

    if (cmcf->state_file.len == 0
        || cmcf->state_file.data[cmcf->state_file.len - 1] == '/')
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid state file \"%V\": a file name is "
                           "expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &cmcf->state_file, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cmcf->state_interval = 30000;
    ngx_str_set(&pool, "default");

    for (i = 2; i < cf->args->nelts; i++) {

        rc = ngx_http_conductor_param_msec(&value[i], "interval",
                                           &cmcf->state_interval);
        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_DECLINED && value[i].len > sizeof("thread_pool=") - 1
            && ngx_strncmp(value[i].data, "thread_pool=",
                           sizeof("thread_pool=") - 1)
               == 0)
        {
            pool.data = value[i].data + sizeof("thread_pool=") - 1;
            pool.len = value[i].len - (sizeof("thread_pool=") - 1);
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": expected "
                           "interval=TIME or thread_pool=NAME", &value[i]);
        return NGX_CONF_ERROR;
    }

#if (NGX_THREADS)
    /* "default" is made with 32 threads unless thread_pool declares it */
    cmcf->state_pool = ngx_thread_pool_add(cf, &pool);
    if (cmcf->state_pool == NULL) {
        return NGX_CONF_ERROR;
    }
#endif

    return NGX_CONF_OK;
}


/*
 * A new zone, in the master (a blocking read is fine there): the nodes of
 * the file that the configuration still has get their counters back.
 * Whatever is wrong with the file, nginx starts: from zero.
 */

void
ngx_http_conductor_state_load(ngx_http_conductor_main_conf_t *cmcf,
    ngx_log_t *log)
{
    u_char                           *buf, *names;
    size_t                            len, i, n;
    json_t                           *root, *nodes, *v;
    uint64_t                          written, start;
    ngx_str_t                         name;
    ngx_uint_t                        restored, dropped;
    json_error_t                      jerr;
    ngx_http_conductor_node_t        *node;
    ngx_http_conductor_state_rec_t   *recs, **sorted;
    ngx_http_conductor_state_load_t   ld;

    if (cmcf->state_file.len == 0 || ngx_test_config) {
        return;
    }

    start = ngx_http_conductor_state_usec();

    if (ngx_http_conductor_state_read(cmcf, log, &buf, &len) != NGX_OK) {
        return;
    }

    recs = NULL;
    sorted = NULL;
    names = NULL;

    ngx_memzero(&ld, sizeof(ngx_http_conductor_state_load_t));
    ld.cmcf = cmcf;
    ld.now_ms = ngx_http_conductor_now_ms();
    ld.now = (time_t) (ld.now_ms / 1000);

    root = json_loadb((char *) buf, len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "conductor: state file \"%V\" ignored: not valid "
                      "JSON: %s at line %d, column %d", &cmcf->state_file,
                      jerr.text, jerr.line, jerr.column);
        goto done;
    }

    nodes = json_object_get(root, "nodes");
    n = json_is_array(nodes) ? json_array_size(nodes) : 0;

    /* the decoded names are never longer than the file that held them */
    recs = ngx_alloc((n + 1) * sizeof(ngx_http_conductor_state_rec_t), log);
    sorted = ngx_alloc((n + 1) * sizeof(ngx_http_conductor_state_rec_t *),
                       log);
    names = ngx_alloc(len + 1, log);
    ld.names = names;

    if (recs == NULL || sorted == NULL || names == NULL) {
        goto done;
    }

    if (ngx_http_conductor_state_parse(&ld, root, recs) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "conductor: state file \"%V\" ignored: %s",
                      &cmcf->state_file, ld.msg);
        goto done;
    }

    /* two nodes of one name: not a file this module wrote */
    for (i = 0; i < n; i++) {
        sorted[i] = &recs[i];
    }

    ngx_qsort(sorted, n, sizeof(ngx_http_conductor_state_rec_t *),
              ngx_http_conductor_state_cmp);

    for (i = 1; i < n; i++) {
        if (ngx_http_conductor_state_cmp(&sorted[i - 1], &sorted[i]) == 0) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "conductor: state file \"%V\" ignored: node %uz "
                          "has the name of node %uz", &cmcf->state_file,
                          (size_t) (ngx_max(sorted[i - 1], sorted[i]) - recs),
                          (size_t) (ngx_min(sorted[i - 1], sorted[i]) - recs));
            goto done;
        }
    }

    restored = 0;
    dropped = 0;

    for (i = 0; i < n; i++) {
        name.data = recs[i].name;
        name.len = recs[i].len;

        if (name.len == ngx_http_conductor_state_gateway.len
            && ngx_strncmp(name.data, ngx_http_conductor_state_gateway.data,
                           name.len)
               == 0)
        {
            node = &cmcf->sh->gateway;

        } else {
            node = ngx_http_conductor_node_find(cmcf, &name);
        }

        if (node == NULL) {
            dropped++;
            continue;
        }

        ngx_http_conductor_state_restore(node, &recs[i]);
        restored++;
    }

    v = json_object_get(root, "written");
    written = json_is_integer(v) ? (uint64_t) json_integer_value(v)
                                 : ld.now_ms;

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "conductor: state file \"%V\" of %uL s ago: the counters "
                  "of %ui nodes restored, %ui dropped (not in this "
                  "configuration), %ui times in the future clamped or "
                  "dropped; loaded in %uL ms", &cmcf->state_file,
                  (ld.now_ms > written) ? (ld.now_ms - written) / 1000 : 0,
                  restored, dropped, ld.clamped,
                  (ngx_http_conductor_state_usec() - start) / 1000);

done:

    if (root) {
        json_decref(root);
    }

    if (recs) {
        ngx_free(recs);
    }

    if (sorted) {
        ngx_free(sorted);
    }

    if (names) {
        ngx_free(names);
    }

    ngx_free(buf);
}


/* the whole file in memory; NGX_DECLINED: none to load (reported) */

static ngx_int_t
ngx_http_conductor_state_read(ngx_http_conductor_main_conf_t *cmcf,
    ngx_log_t *log, u_char **buf, size_t *len)
{
    off_t            size;
    u_char          *p;
    size_t           got;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_err_t        err;
    ngx_file_info_t  fi;

    fd = ngx_open_file(cmcf->state_file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN,
                       0);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;

        if (err == NGX_ENOENT) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "conductor: no state file \"%V\" yet: the "
                          "counters start from zero", &cmcf->state_file);

        } else {
            ngx_log_error(NGX_LOG_ERR, log, err,
                          "conductor: state file \"%V\" ignored: "
                          ngx_open_file_n " failed", &cmcf->state_file);
        }

        return NGX_DECLINED;
    }

    p = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "conductor: state file \"%V\" ignored: "
                      ngx_fd_info_n " failed", &cmcf->state_file);
        goto failed;
    }

    size = ngx_file_size(&fi);

    if (!ngx_is_file(&fi) || size > NGX_HTTP_CONDUCTOR_STATE_MAX_SIZE) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "conductor: state file \"%V\" ignored: not a regular "
                      "file of at most 1 GB", &cmcf->state_file);
        goto failed;
    }

    p = ngx_alloc((size_t) size + 1, log);
    if (p == NULL) {
        goto failed;
    }

    for (got = 0; got < (size_t) size; got += n) {
        n = ngx_read_fd(fd, p + got, (size_t) size - got);

        if (n == -1) {
            ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                          "conductor: state file \"%V\" ignored: "
                          ngx_read_fd_n " failed", &cmcf->state_file);
            goto failed;
        }

        if (n == 0) {
            /* shrunk while read: what came is checked as it is */
            break;
        }
    }

    (void) ngx_close_file(fd);

    *buf = p;
    *len = got;

    return NGX_OK;

failed:

    if (p) {
        ngx_free(p);
    }

    (void) ngx_close_file(fd);

    return NGX_DECLINED;
}


/* the whole document into records, or NGX_ERROR and why in ld->msg */

static ngx_int_t
ngx_http_conductor_state_parse(ngx_http_conductor_state_load_t *ld,
    json_t *root, ngx_http_conductor_state_rec_t *recs)
{
    size_t   i;
    json_t  *v, *nodes;

    ld->at = ld->msg;

    if (!json_is_object(root)) {
        return ngx_http_conductor_state_wrong(ld, "not a JSON object");
    }

    v = json_object_get(root, "version");

    if (!json_is_integer(v)) {
        return ngx_http_conductor_state_wrong(ld, "no \"version\": not a "
                                              "state file of this module");
    }

    if (json_integer_value(v) != NGX_HTTP_CONDUCTOR_STATE_VERSION) {
        return ngx_http_conductor_state_wrong(ld, "version %L, this module "
                                              "reads version %d",
                                              (int64_t) json_integer_value(v),
                                              NGX_HTTP_CONDUCTOR_STATE_VERSION);
    }

    v = json_object_get(root, "written");

    if (v && (!json_is_integer(v) || json_integer_value(v) < 0)) {
        return ngx_http_conductor_state_wrong(ld, "\"written\" is not a "
                                              "time in ms");
    }

    nodes = json_object_get(root, "nodes");

    if (!json_is_array(nodes)) {
        return ngx_http_conductor_state_wrong(ld, "\"nodes\" is not an "
                                              "array");
    }

    for (i = 0; i < json_array_size(nodes); i++) {
        ld->at = ngx_sprintf(ld->msg, "node %uz: ", i);

        if (ngx_http_conductor_state_parse_node(ld, json_array_get(nodes, i),
                                                &recs[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ld->names += recs[i].len;
    }

    return NGX_OK;
}


/* every member may be missing (zero); present, it has its type */

static ngx_int_t
ngx_http_conductor_state_parse_node(ngx_http_conductor_state_load_t *ld,
    json_t *node, ngx_http_conductor_state_rec_t *r)
{
    json_t                            *v, *m;
    uint64_t                           max;
    ngx_uint_t                         i;
    ngx_http_conductor_state_group_t  *g;
    ngx_http_conductor_state_field_t  *f;

    if (!json_is_object(node)) {
        return ngx_http_conductor_state_wrong(ld, "not an object");
    }

    ngx_memzero(r, sizeof(ngx_http_conductor_state_rec_t));
    r->remaining_requests = -1;
    r->remaining_tokens = -1;
    r->name = ld->names;

    if (ngx_http_conductor_state_name(json_object_get(node, "name"),
                                      ld->names, &r->len)
        != NGX_OK)
    {
        return ngx_http_conductor_state_wrong(ld, "\"name\" is not the name "
                                              "of a node");
    }

    for (f = ngx_http_conductor_state_fields; f->name.len; f++) {
        v = json_object_get(node, (char *) f->name.data);

        if (v == NULL) {
            continue;
        }

        if (!json_is_integer(v) || json_integer_value(v) < f->min) {
            return ngx_http_conductor_state_wrong(ld, "\"%s\" is not an "
                                                  "integer >= %L",
                                                  f->name.data, f->min);
        }

        *(int64_t *) ((u_char *) r + f->offset) = json_integer_value(v);
    }

    for (g = ngx_http_conductor_state_groups; g->name.len; g++) {
        m = json_object_get(node, (char *) g->name.data);

        if (m == NULL) {
            continue;
        }

        if (!json_is_object(m)) {
            return ngx_http_conductor_state_wrong(ld, "\"%s\" is not an "
                                                  "object", g->name.data);
        }

        for (i = 0; i < g->n; i++) {
            v = json_object_get(m, g->names[i]);

            if (v == NULL) {
                continue;
            }

            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                return ngx_http_conductor_state_wrong(ld, "\"%s\".\"%s\" is "
                                                      "not an integer >= 0",
                                                      g->name.data,
                                                      g->names[i]);
            }

            ((uint64_t *) ((u_char *) r + g->offset))[i] =
                                                       json_integer_value(v);
        }
    }

    v = json_object_get(node, "cost");

    if (v && ngx_http_conductor_state_money(v, &r->cost) != NGX_OK) {
        return ngx_http_conductor_state_wrong(ld, "\"cost\" is not a sum "
                                              "of USD such as \"1.5\"");
    }

    if (ngx_http_conductor_state_parse_windows(ld,
                                        json_object_get(node, "windows"), r)
        != NGX_OK
        || ngx_http_conductor_state_parse_spend(ld,
                                        json_object_get(node, "spend"), r)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* no cooldown beyond what a provider's hint may set now */
    max = ld->now_ms + ld->cmcf->cooldown_max;

    if (r->cooldown_until > max) {
        r->cooldown_until = max;
        ld->clamped++;
    }

    /* a key was disabled when a 401 came: never later than now */
    if (r->disabled > ld->now_ms) {
        r->disabled = ld->now_ms;
        ld->clamped++;
    }

    return NGX_OK;
}


/* "windows": {"rpm": [prev, cur, start], ...}: only the touched ones */

static ngx_int_t
ngx_http_conductor_state_parse_windows(ngx_http_conductor_state_load_t *ld,
    json_t *obj, ngx_http_conductor_state_rec_t *r)
{
    json_t      *w, *v;
    int64_t      n[3];
    ngx_uint_t   i, j;

    if (obj == NULL) {
        return NGX_OK;
    }

    if (!json_is_object(obj)) {
        return ngx_http_conductor_state_wrong(ld, "\"windows\" is not an "
                                              "object");
    }

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i++) {
        w = json_object_get(obj, ngx_http_conductor_state_limit_names[i]);

        if (w == NULL) {
            continue;
        }

        for (j = 0; j < 3; j++) {
            v = json_array_get(w, j);
            n[j] = json_is_integer(v) ? json_integer_value(v) : -1;

            if (n[j] < 0 || json_array_size(w) != 3) {
                return ngx_http_conductor_state_wrong(ld, "window \"%s\" is "
                                                      "not [prev, cur, "
                                                      "start] of integers "
                                                      ">= 0",
                                    ngx_http_conductor_state_limit_names[i]);
            }
        }

        /* a bucket starts on a multiple of its period, never after now */
        if (n[2] > ld->now || n[2] % ngx_http_conductor_periods[i]) {
            ld->clamped++;
            continue;
        }

        r->win[i].prev = n[0];
        r->win[i].cur = n[1];
        r->win[i].start = (time_t) n[2];
    }

    return NGX_OK;
}


/* "spend": {"day": {"spent": "1.5", "period": N}, ...}: a client's budgets */

static ngx_int_t
ngx_http_conductor_state_parse_spend(ngx_http_conductor_state_load_t *ld,
    json_t *obj, ngx_http_conductor_state_rec_t *r)
{
    json_t      *s, *v;
    ngx_uint_t   i;

    if (obj == NULL) {
        return NGX_OK;
    }

    if (!json_is_object(obj)) {
        return ngx_http_conductor_state_wrong(ld, "\"spend\" is not an "
                                              "object");
    }

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NPERIODS; i++) {
        s = json_object_get(obj, ngx_http_conductor_state_period_names[i]);

        if (s == NULL) {
            continue;
        }

        v = json_object_get(s, "period");

        if (ngx_http_conductor_state_money(json_object_get(s, "spent"),
                                           &r->spent[i])
            != NGX_OK
            || !json_is_integer(v) || json_integer_value(v) < 0)
        {
            return ngx_http_conductor_state_wrong(ld, "budget \"%s\" is not "
                                                  "{\"spent\": USD, "
                                                  "\"period\": integer}",
                                   ngx_http_conductor_state_period_names[i]);
        }

        /* a day or month number: never beyond the seconds of now */
        if (json_integer_value(v) > ld->now) {
            r->spent[i].usd = 0;
            r->spent[i].pico = 0;
            ld->clamped++;
            continue;
        }

        r->period[i] = json_integer_value(v);
    }

    return NGX_OK;
}


/* what is wrong, after the "node N: " that ld->at may follow */

static ngx_int_t
ngx_http_conductor_state_wrong(ngx_http_conductor_state_load_t *ld,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(ld->at, ld->msg + sizeof(ld->msg) - 1, fmt, args);
    va_end(args);

    *p = '\0';

    return NGX_ERROR;
}


/* "12.000345000000": exact, as the writer puts it */

static ngx_int_t
ngx_http_conductor_state_money(json_t *v, ngx_http_conductor_money_t *m)
{
    if (!json_is_string(v)
        || ngx_http_conductor_money_parse((u_char *) json_string_value(v),
                                          json_string_length(v), m)
           != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A name is any bytes: the writer escapes every byte outside printable
 * ASCII as \u00XX, which jansson decodes to U+0000..U+00FF in UTF-8; each
 * such code point is the byte again.
 */

static ngx_int_t
ngx_http_conductor_state_name(json_t *v, u_char *dst, size_t *len)
{
    u_char  *s, *end, *p;

    if (!json_is_string(v)) {
        return NGX_ERROR;
    }

    s = (u_char *) json_string_value(v);
    end = s + json_string_length(v);
    p = dst;

    while (s < end) {

        if (*s < 0x80) {
            *p++ = *s++;

        } else if ((*s == 0xc2 || *s == 0xc3) && s + 1 < end
                   && (s[1] & 0xc0) == 0x80)
        {
            *p++ = (u_char) (((s[0] & 0x03) << 6) | (s[1] & 0x3f));
            s += 2;

        } else {
            return NGX_ERROR;
        }
    }

    *len = p - dst;

    if (*len == 0 || *len > NGX_HTTP_CONDUCTOR_STATE_NAME_MAX) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_conductor_state_cmp(const void *one, const void *two)
{
    ngx_http_conductor_state_rec_t  *a, *b;

    a = *(ngx_http_conductor_state_rec_t **) one;
    b = *(ngx_http_conductor_state_rec_t **) two;

    return ngx_memn2cmp(a->name, b->name, a->len, b->len);
}


/* the persistent fields: never in flight, holds, breaker, health, slots */

static void
ngx_http_conductor_state_save(ngx_http_conductor_state_rec_t *r,
    ngx_http_conductor_node_t *n)
{
    ngx_uint_t  i;

    ngx_memcpy(r->win, n->win, sizeof(r->win));

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NPERIODS; i++) {
        r->spent[i] = n->spend[i].spent;
        r->period[i] = n->spend[i].period;
    }

    r->requests = n->requests;
    r->responses = n->responses;
    r->estimated = n->estimated;
    r->unpriced = n->unpriced;
    r->ttfb_sum = n->ttfb_sum;
    r->ttfb_ewma = n->ttfb_ewma;
    r->cooldown_until = n->cooldown_until;
    r->disabled = n->disabled;
    r->backoff = n->backoff;
    r->remaining_requests = n->remaining_requests;
    r->remaining_tokens = n->remaining_tokens;
    ngx_memcpy(r->errors, n->errors, sizeof(r->errors));
    r->tokens[0] = n->prompt_tokens;
    r->tokens[1] = n->completion_tokens;
    r->tokens[2] = n->cached_tokens;
    r->tokens[3] = n->cache_creation_tokens;
    r->tokens[4] = n->reasoning_tokens;
    r->cost = n->cost;
}


static void
ngx_http_conductor_state_restore(ngx_http_conductor_node_t *n,
    ngx_http_conductor_state_rec_t *r)
{
    ngx_uint_t  i;

    ngx_memcpy(n->win, r->win, sizeof(n->win));

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NPERIODS; i++) {
        n->spend[i].spent = r->spent[i];
        n->spend[i].period = r->period[i];
    }

    n->requests = r->requests;
    n->responses = r->responses;
    n->estimated = r->estimated;
    n->unpriced = r->unpriced;
    n->ttfb_sum = r->ttfb_sum;
    n->ttfb_ewma = (ngx_msec_t) r->ttfb_ewma;
    n->cooldown_until = r->cooldown_until;
    n->disabled = r->disabled;
    n->backoff = (ngx_uint_t) r->backoff;
    n->remaining_requests = r->remaining_requests;
    n->remaining_tokens = r->remaining_tokens;
    ngx_memcpy(n->errors, r->errors, sizeof(n->errors));
    n->prompt_tokens = r->tokens[0];
    n->completion_tokens = r->tokens[1];
    n->cached_tokens = r->tokens[2];
    n->cache_creation_tokens = r->tokens[3];
    n->reasoning_tokens = r->tokens[4];
    n->cost = r->cost;
}


/*
 * A worker: its writer, the list of the nodes it writes and its timer.
 * The nodes are the configuration's, never found by walking the tree: the
 * master inserts into it without the lock at a reload.  Names never
 * change once a node exists: the records point to them in the zone.
 */

ngx_int_t
ngx_http_conductor_state_init_process(ngx_cycle_t *cycle)
{
    size_t                            len, names;
    ngx_uint_t                        i, j, d, n;
    ngx_http_conductor_key_t         *key;
    ngx_http_conductor_node_t       **nodes;
    ngx_http_conductor_model_t      **m;
    ngx_http_conductor_state_t       *st;
    ngx_http_conductor_client_t     **c;
    ngx_http_conductor_provider_t   **p;
    ngx_http_conductor_main_conf_t   *cmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_conductor_module);

    if (cmcf == NULL || cmcf->sh == NULL || cmcf->state_file.len == 0) {
        return NGX_OK;
    }

    st = ngx_pcalloc(cycle->pool, sizeof(ngx_http_conductor_state_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    st->cmcf = cmcf;

    p = cmcf->providers.elts;
    m = cmcf->models.elts;
    c = cmcf->clients.elts;

    n = 1 + cmcf->providers.nelts + cmcf->models.nelts
        + NGX_HTTP_CONDUCTOR_NDIALECTS + cmcf->clients.nelts;

    for (i = 0; i < cmcf->providers.nelts; i++) {
        n += p[i]->keys.nelts;
    }

    nodes = ngx_palloc(cycle->pool, n * sizeof(ngx_http_conductor_node_t *));
    if (nodes == NULL) {
        return NGX_ERROR;
    }

    /* the gateway first, then in the order of the configuration */
    n = 0;
    nodes[n++] = &cmcf->sh->gateway;

    for (i = 0; i < cmcf->providers.nelts; i++) {
        nodes[n++] = p[i]->node;
        key = p[i]->keys.elts;

        for (j = 0; j < p[i]->keys.nelts; j++) {
            nodes[n++] = key[j].node;
        }
    }

    for (i = 0; i < cmcf->models.nelts; i++) {
        nodes[n++] = m[i]->node;
    }

    for (d = 0; d < NGX_HTTP_CONDUCTOR_NDIALECTS; d++) {
        nodes[n++] = cmcf->passthrough[d].node;
    }

    for (i = 0; i < cmcf->clients.nelts; i++) {
        if (c[i]->node) {
            nodes[n++] = c[i]->node;
        }
    }

    st->nodes = nodes;
    st->nrecs = n;

    st->recs = ngx_palloc(cycle->pool,
                          n * sizeof(ngx_http_conductor_state_rec_t));
    if (st->recs == NULL) {
        return NGX_ERROR;
    }

    names = 0;

    for (i = 0; i < n; i++) {
        st->recs[i].name = nodes[i]->name;
        st->recs[i].len = nodes[i]->len;
        names += nodes[i]->len;
    }

    st->recs[0].name = ngx_http_conductor_state_gateway.data;
    st->recs[0].len = ngx_http_conductor_state_gateway.len;

    /* every name byte may take six: \u00XX; pages never written to cost
     * no memory */
    st->out = ngx_palloc(cycle->pool,
                         128 + n * NGX_HTTP_CONDUCTOR_STATE_NODE_LEN
                         + (names + ngx_http_conductor_state_gateway.len)
                           * 6);
    if (st->out == NULL) {
        return NGX_ERROR;
    }

    len = cmcf->state_file.len + sizeof(".tmp.") + NGX_INT64_LEN;

    st->tmp = ngx_pnalloc(cycle->pool, len);
    st->dir = ngx_pnalloc(cycle->pool, cmcf->state_file.len + 1);

    if (st->tmp == NULL || st->dir == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(st->tmp, "%V.tmp.%P%Z", &cmcf->state_file, ngx_pid);

    /* a full name: its directory is what comes before the last slash */
    for (len = cmcf->state_file.len; len > 1; len--) {
        if (cmcf->state_file.data[len - 1] == '/') {
            break;
        }
    }

    len = (len > 1) ? len - 1 : 1;
    ngx_memcpy(st->dir, cmcf->state_file.data, len);
    st->dir[len] = '\0';

#if (NGX_THREADS)
    st->task = ngx_thread_task_alloc(cycle->pool, 0);
    if (st->task == NULL) {
        return NGX_ERROR;
    }

    st->task->ctx = st;
    st->task->handler = ngx_http_conductor_state_thread;
    st->task->event.handler = ngx_http_conductor_state_done;
    st->task->event.data = st;
    st->task->event.log = cycle->log;
#endif

    st->timer.handler = ngx_http_conductor_state_timer;
    st->timer.data = st;
    st->timer.log = cycle->log;

    /* a worker that exits writes on its own: the timer never holds it */
    st->timer.cancelable = 1;

    ngx_add_timer(&st->timer, cmcf->state_interval);

    ngx_http_conductor_state = st;

    return NGX_OK;
}


static void
ngx_http_conductor_state_timer(ngx_event_t *ev)
{
    ngx_http_conductor_state_t  *st;

    st = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    /* a write still under way in a thread: the next interval's turn */
    if (!st->busy && ngx_http_conductor_state_snapshot(st, 1) == NGX_OK) {
        ngx_http_conductor_state_post(st);
    }

    ngx_add_timer(ev, st->cmcf->state_interval);
}


/*
 * A copy of the persistent fields, a few hundred nodes at a time under the
 * zone lock: each node is copied whole, and other workers wait for the lock
 * no longer than a chunk takes.  With lease, NGX_DECLINED when another
 * worker has written this interval.
 */

static ngx_int_t
ngx_http_conductor_state_snapshot(ngx_http_conductor_state_t *st,
    ngx_uint_t lease)
{
    uint64_t                         now_ms, start, locked;
    ngx_uint_t                       i, last;
    ngx_msec_t                       interval;
    ngx_http_conductor_shctx_t      *sh;

    sh = st->cmcf->sh;
    interval = st->cmcf->state_interval;
    start = ngx_http_conductor_state_usec();

    st->locked_us = 0;

    for (i = 0; i < st->nrecs; /* void */ ) {

        ngx_http_conductor_shm_lock(st->cmcf);

        locked = ngx_http_conductor_state_usec();

        if (i == 0) {
            now_ms = ngx_http_conductor_now_ms();

            if (lease && now_ms < sh->state_next) {
                ngx_http_conductor_shm_unlock(st->cmcf);
                return NGX_DECLINED;
            }

            if (lease) {
                /* a little less than an interval: the writer's own next
                 * timer is past it even when timers drift */
                sh->state_next = now_ms + interval - interval / 4;
            }

            st->written = now_ms;
        }

        last = ngx_min(i + NGX_HTTP_CONDUCTOR_STATE_CHUNK, st->nrecs);

        for ( /* void */ ; i < last; i++) {
            ngx_http_conductor_state_save(&st->recs[i], st->nodes[i]);
        }

        ngx_http_conductor_shm_unlock(st->cmcf);

        locked = ngx_http_conductor_state_usec() - locked;
        st->locked_us = ngx_max(st->locked_us, locked);
    }

    st->snapshot_us = ngx_http_conductor_state_usec() - start;

    return NGX_OK;
}


/* the file is made and written by a thread of the pool, if there is one */

static void
ngx_http_conductor_state_post(ngx_http_conductor_state_t *st)
{
#if (NGX_THREADS)
    st->busy = 1;
    st->threaded = 1;

    if (ngx_thread_task_post(st->cmcf->state_pool, st->task) == NGX_OK) {
        return;
    }

    /* the pool's queue is full (it said so): the next interval tries */
    st->busy = 0;

#else
    ngx_http_conductor_state_job(st);
    ngx_http_conductor_state_report(st, 0);
#endif
}


#if (NGX_THREADS)

static void
ngx_http_conductor_state_thread(void *data, ngx_log_t *log)
{
    ngx_http_conductor_state_job(data);
}


/* back in the worker: the buffers are its own again */

static void
ngx_http_conductor_state_done(ngx_event_t *ev)
{
    ngx_http_conductor_state_t  *st;

    st = ev->data;
    st->busy = 0;

    ngx_http_conductor_state_report(st, 0);
}

#endif


/* format and write; in a thread, it touches nothing but st's buffers */

static void
ngx_http_conductor_state_job(ngx_http_conductor_state_t *st)
{
    uint64_t  t0, t1;

    t0 = ngx_http_conductor_state_usec();
    ngx_http_conductor_state_format(st);
    t1 = ngx_http_conductor_state_usec();
    ngx_http_conductor_state_write(st);

    st->format_us = t1 - t0;
    st->write_us = ngx_http_conductor_state_usec() - t1;
}


/* one node a line, in the order of the configuration: ops read and diff it */

static void
ngx_http_conductor_state_format(ngx_http_conductor_state_t *st)
{
    u_char      *p;
    ngx_uint_t   i;

    p = ngx_sprintf(st->out, "{\"version\":%d,\"written\":%uL,\"pid\":%P,"
                    "\"nodes\":[\n", NGX_HTTP_CONDUCTOR_STATE_VERSION,
                    st->written, ngx_pid);

    for (i = 0; i < st->nrecs; i++) {
        p = ngx_http_conductor_state_node(p, &st->recs[i]);

        if (i + 1 < st->nrecs) {
            *p++ = ',';
        }

        *p++ = LF;
    }

    p = ngx_http_conductor_cpy(p, "]}\n");

    st->out_len = p - st->out;
}


static u_char *
ngx_http_conductor_state_node(u_char *p, ngx_http_conductor_state_rec_t *r)
{
    u_char                            *s, *end;
    ngx_uint_t                         i, first;
    ngx_http_conductor_state_group_t  *g;
    ngx_http_conductor_state_field_t  *f;
    static u_char                      hex[] = "0123456789abcdef";

    p = ngx_http_conductor_cpy(p, "{\"name\":\"");

    for (s = r->name, end = r->name + r->len; s < end; s++) {
        if (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\') {
            *p++ = *s;
            continue;
        }

        p = ngx_http_conductor_cpy(p, "\\u00");
        *p++ = hex[*s >> 4];
        *p++ = hex[*s & 0xf];
    }

    *p++ = '"';

    for (f = ngx_http_conductor_state_fields; f->name.len; f++) {
        p = ngx_http_conductor_cpy(p, ",\"");
        p = ngx_cpymem(p, f->name.data, f->name.len);
        p = ngx_http_conductor_cpy(p, "\":");

        if (f->min < 0 && *(int64_t *) ((u_char *) r + f->offset) < 0) {
            p = ngx_http_conductor_cpy(p, "-1");
            continue;
        }

        p = ngx_http_conductor_state_num(p,
                                 *(uint64_t *) ((u_char *) r + f->offset));
    }

    for (g = ngx_http_conductor_state_groups; g->name.len; g++) {
        p = ngx_sprintf(p, ",\"%V\":{", &g->name);

        for (i = 0; i < g->n; i++) {
            p = ngx_sprintf(p, "%s\"%s\":", i ? "," : "", g->names[i]);
            p = ngx_http_conductor_state_num(p,
                               ((uint64_t *) ((u_char *) r + g->offset))[i]);
        }

        *p++ = '}';
    }

    p = ngx_http_conductor_cpy(p, ",\"cost\":");
    p = ngx_http_conductor_state_cost(p, r->cost);

    p = ngx_http_conductor_cpy(p, ",\"windows\":{");
    first = 1;

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i++) {
        if (r->win[i].start <= 0) {
            continue;                           /* never touched */
        }

        p = ngx_sprintf(p, "%s\"%s\":[", first ? "" : ",",
                        ngx_http_conductor_state_limit_names[i]);
        p = ngx_http_conductor_state_num(p, r->win[i].prev);
        *p++ = ',';
        p = ngx_http_conductor_state_num(p, r->win[i].cur);
        *p++ = ',';
        p = ngx_http_conductor_state_num(p, (uint64_t) r->win[i].start);
        *p++ = ']';
        first = 0;
    }

    p = ngx_http_conductor_cpy(p, "},\"spend\":{");
    first = 1;

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NPERIODS; i++) {
        if (r->period[i] == 0 && r->spent[i].usd == 0
            && r->spent[i].pico == 0)
        {
            continue;
        }

        p = ngx_sprintf(p, "%s\"%s\":{\"spent\":", first ? "" : ",",
                        ngx_http_conductor_state_period_names[i]);
        p = ngx_http_conductor_state_cost(p, r->spent[i]);
        p = ngx_http_conductor_cpy(p, ",\"period\":");
        p = ngx_http_conductor_state_num(p, r->period[i]);
        *p++ = '}';
        first = 0;
    }

    return ngx_http_conductor_cpy(p, "}}");
}


/* a counter as jansson reads it back: beyond INT64_MAX it stays there */

static u_char *
ngx_http_conductor_state_num(u_char *p, uint64_t v)
{
    u_char  *d, digits[NGX_INT64_LEN];

    v = ngx_min(v, (uint64_t) INT64_MAX);
    d = digits + sizeof(digits);

    do {
        *--d = (u_char) ('0' + v % 10);
        v /= 10;
    } while (v);

    return ngx_cpymem(p, d, digits + sizeof(digits) - d);
}


/* "USD.PPPPPPPPPPPP": every pico-USD, no double on the way */

static u_char *
ngx_http_conductor_state_cost(u_char *p, ngx_http_conductor_money_t m)
{
    return ngx_sprintf(p, "\"%uL.%012uL\"", m.usd, m.pico);
}


/*
 * PATH.tmp.PID, made new (O_EXCL: not through a link someone left there),
 * fsynced, renamed over PATH, and the directory fsynced so that the rename
 * survives a crash.  A failure leaves PATH as it was and removes the
 * temporary file.  No log here: a thread may run it.
 */

static void
ngx_http_conductor_state_write(ngx_http_conductor_state_t *st)
{
    size_t      done;
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_uint_t  retry;

    st->failed = NULL;

    for (retry = 0; /* void */ ; retry++) {
        fd = ngx_open_file(st->tmp, NGX_FILE_WRONLY, O_CREAT|O_EXCL,
                           NGX_FILE_DEFAULT_ACCESS);

        if (fd != NGX_INVALID_FILE || ngx_errno != NGX_EEXIST || retry) {
            break;
        }

        /* left by a worker of the same pid that died while writing */
        (void) ngx_delete_file(st->tmp);
    }

    if (fd == NGX_INVALID_FILE) {
        st->err = ngx_errno;
        st->failed = ngx_open_file_n;
        st->failed_name = st->tmp;
        return;
    }

    for (done = 0; done < st->out_len; done += n) {
        n = ngx_write_fd(fd, st->out + done, st->out_len - done);

        if (n == -1) {
            st->err = ngx_errno;
            st->failed = ngx_write_fd_n;
            goto failed;
        }
    }

    if (fsync(fd) == -1) {
        st->err = ngx_errno;
        st->failed = "fsync()";
        goto failed;
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        st->err = ngx_errno;
        st->failed = ngx_close_file_n;
        fd = NGX_INVALID_FILE;
        goto failed;
    }

    fd = NGX_INVALID_FILE;

    if (ngx_rename_file(st->tmp, st->cmcf->state_file.data) == -1) {
        st->err = ngx_errno;
        st->failed = ngx_rename_file_n;
        goto failed;
    }

    fd = ngx_open_file(st->dir, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE || fsync(fd) == -1) {
        st->err = ngx_errno;
        st->failed = "fsync()";
        st->failed_name = st->dir;
    }

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    return;

failed:

    st->failed_name = st->tmp;

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    (void) ngx_delete_file(st->tmp);
}


/*
 * In the worker: the figures at debug level, a failure at error level
 * once a minute (once an interval when that is longer) and always on exit.
 */

static void
ngx_http_conductor_state_report(ngx_http_conductor_state_t *st,
    ngx_uint_t exiting)
{
    uint64_t     now_ms, quiet;
    ngx_log_t   *log;
    const char  *hint;

    log = ngx_cycle->log;

    if (st->failed == NULL) {
        ngx_log_debug7(NGX_LOG_DEBUG_HTTP, log, 0,
                       "conductor: state file written: %ui nodes, "
                       "%uz bytes; in the worker: snapshot %uL us (zone "
                       "locked %uL us); %s: format %uL us, write, fsync "
                       "and rename %uL us",
                       st->nrecs, st->out_len, st->snapshot_us,
                       st->locked_us,
                       st->threaded ? "in a thread" : "in the worker",
                       st->format_us, st->write_us);

        if (st->failing) {
            st->failing = 0;
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "conductor: state file \"%V\" written again",
                          &st->cmcf->state_file);
        }

        return;
    }

    now_ms = ngx_http_conductor_now_ms();
    quiet = ngx_max(st->cmcf->state_interval,
                    NGX_HTTP_CONDUCTOR_STATE_QUIET);

    if (!exiting && st->failing && now_ms - st->logged < quiet) {
        return;
    }

    st->failing = 1;
    st->logged = now_ms;

    hint = (st->err == NGX_EACCES || st->err == NGX_EPERM)
           ? ", the directory must be writable by nginx's worker user" : "";

    ngx_log_error(NGX_LOG_ERR, log, st->err,
                  "conductor: state file \"%V\" not written%s%s: "
                  "%s \"%s\" failed", &st->cmcf->state_file,
                  exiting ? " on exit" : "", hint, st->failed,
                  st->failed_name);
}


static uint64_t
ngx_http_conductor_state_usec(void)
{
    struct timeval  tv;

    ngx_gettimeofday(&tv);

    return (uint64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}


/*
 * A worker that exits writes what the zone has now: its own requests are
 * all logged by then.  The thread pool has already been destroyed (its
 * module exits before this one, and waits for the tasks it has): no write
 * of this worker is under way, the buffers are free.
 */

void
ngx_http_conductor_state_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_conductor_state_t  *st;

    st = ngx_http_conductor_state;

    if (st == NULL) {
        return;
    }

    ngx_http_conductor_state = NULL;
    st->threaded = 0;

    if (ngx_http_conductor_state_snapshot(st, 0) == NGX_OK) {
        ngx_http_conductor_state_job(st);
        ngx_http_conductor_state_report(st, 1);
    }
}

