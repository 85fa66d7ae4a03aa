
/*
 * ngx_http_conductor_module: types shared by the module's files.
 */

#ifndef _NGX_HTTP_CONDUCTOR_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_conductor_json.h"
#include "ngx_http_conductor_minutes.h"
#include "ngx_http_conductor_money.h"
#include "ngx_http_conductor_ratelimit.h"
#include "ngx_http_conductor_sha256.h"
#include "ngx_http_conductor_sse.h"
#include "ngx_http_conductor_strip.h"
#include "ngx_http_conductor_usage.h"
#include "ngx_http_conductor_window.h"


/* jansson's: the files that use it include it */
struct json_t;


/* copies a string literal: its length is counted by the compiler */
#define ngx_http_conductor_cpy(p, s)  ngx_cpymem(p, s, sizeof(s) - 1)


#define NGX_HTTP_CONDUCTOR_OPENAI       0
#define NGX_HTTP_CONDUCTOR_ANTHROPIC    1
#define NGX_HTTP_CONDUCTOR_NDIALECTS    2


/* limits of a key, in the order of their names (rpm tpm rph tph rpd tpd) */
#define NGX_HTTP_CONDUCTOR_RPM          0
#define NGX_HTTP_CONDUCTOR_TPM          1
#define NGX_HTTP_CONDUCTOR_RPH          2
#define NGX_HTTP_CONDUCTOR_TPH          3
#define NGX_HTTP_CONDUCTOR_RPD          4
#define NGX_HTTP_CONDUCTOR_TPD          5
#define NGX_HTTP_CONDUCTOR_NLIMITS      6

#define NGX_HTTP_CONDUCTOR_ALIAS_MAX   256  /* bytes of a model alias */
#define NGX_HTTP_CONDUCTOR_MAX_MEMBERS  128
#define NGX_HTTP_CONDUCTOR_MAX_CANDS    256
#define NGX_HTTP_CONDUCTOR_MAX_ATTEMPTS 16

/* strategies */
#define NGX_HTTP_CONDUCTOR_ROUND_ROBIN    0
#define NGX_HTTP_CONDUCTOR_LEAST_LOADED   1
#define NGX_HTTP_CONDUCTOR_SEQUENTIAL     2
#define NGX_HTTP_CONDUCTOR_SIMPLE         3
#define NGX_HTTP_CONDUCTOR_PRIORITY       4
#define NGX_HTTP_CONDUCTOR_WEIGHTED       5
#define NGX_HTTP_CONDUCTOR_RANDOM         6
#define NGX_HTTP_CONDUCTOR_LEAST_USED     7
#define NGX_HTTP_CONDUCTOR_LEAST_LATENCY  8
#define NGX_HTTP_CONDUCTOR_LEAST_COST     9


typedef struct ngx_http_conductor_provider_s  ngx_http_conductor_provider_t;


/* error classes counted per key */
#define NGX_HTTP_CONDUCTOR_ERR_4XX      0   /* a 4xx other than 429 */
#define NGX_HTTP_CONDUCTOR_ERR_429      1
#define NGX_HTTP_CONDUCTOR_ERR_5XX      2
#define NGX_HTTP_CONDUCTOR_ERR_TIMEOUT  3
#define NGX_HTTP_CONDUCTOR_ERR_CONNECT  4   /* refused, reset, bad header */
#define NGX_HTTP_CONDUCTOR_ERR_STREAM_CUT      5   /* ended incomplete */
#define NGX_HTTP_CONDUCTOR_ERR_STREAM_TIMEOUT  6   /* went quiet */
#define NGX_HTTP_CONDUCTOR_NERRORS      7

/* circuit breaker states */
#define NGX_HTTP_CONDUCTOR_CLOSED       0
#define NGX_HTTP_CONDUCTOR_OPEN         1
#define NGX_HTTP_CONDUCTOR_HALF_OPEN    2


#define NGX_HTTP_CONDUCTOR_COST_LEN  NGX_HTTP_CONDUCTOR_MONEY_LEN

/* processes whose holds the zone can tell apart (old and new workers of a
 * reload together) */
#define NGX_HTTP_CONDUCTOR_SLOTS        128

/* why a candidate cannot take a request now */
#define NGX_HTTP_CONDUCTOR_WAIT_NEVER   0   /* tried, disabled, excluded */
#define NGX_HTTP_CONDUCTOR_WAIT_LIMIT   1   /* a limit or cooldown: 429 */
#define NGX_HTTP_CONDUCTOR_WAIT_FAILING 2   /* breaker, health: 503 */
#define NGX_HTTP_CONDUCTOR_WAIT_CLIENT  3   /* the client's limit: 429 */
#define NGX_HTTP_CONDUCTOR_WAIT_BUDGET  4   /* a budget is spent: 429 */
#define NGX_HTTP_CONDUCTOR_WAIT_UNPRICED 5  /* budget, no price: 403 */

/* the periods of a client's budgets */
#define NGX_HTTP_CONDUCTOR_DAY          0
#define NGX_HTTP_CONDUCTOR_MONTH        1
#define NGX_HTTP_CONDUCTOR_TOTAL        2
#define NGX_HTTP_CONDUCTOR_NPERIODS     3


/* what a client's budget of one period has used */
typedef struct {
    ngx_http_conductor_money_t        spent;     /* in the period */
    ngx_http_conductor_money_t        reserved;  /* estimates in flight */
    uint64_t                          period;    /* its day or month */
} ngx_http_conductor_spend_t;


/*
 * What a key or client shares with the fleet (conductor_redis): per window
 * the changes not pushed yet and the node's own share, in the bucket of
 * start and the one before it; the fleet's view of the others.
 */
typedef struct {
    time_t                            start;     /* bucket of [0] */
    int64_t                           delta[2];  /* not pushed yet */
    int64_t                           mine[2];   /* this node's own */
} ngx_http_conductor_sync_win_t;


typedef struct {
    ngx_http_conductor_sync_win_t     win[NGX_HTTP_CONDUCTOR_NLIMITS];
    uint64_t                          spend_period[NGX_HTTP_CONDUCTOR_NPERIODS];
    int64_t                           spend_delta[NGX_HTTP_CONDUCTOR_NPERIODS];
    int64_t                           spend_mine[NGX_HTTP_CONDUCTOR_NPERIODS];
                                                 /* nano-USD */
    ngx_uint_t                        fleet_inflight;  /* the others' */
    uint64_t                          fleet_held[NGX_HTTP_CONDUCTOR_NPERIODS];
                                                 /* the others', nano-USD */
    uint64_t                          synced;    /* epoch ms, 0: never */
} ngx_http_conductor_sync_t;


/*
 * Live state and totals of one key, provider or model alias, in the shared
 * zone.  Keys use every field; providers and aliases use the totals (and
 * rr), the rest stays zero.
 */
typedef struct {
    ngx_rbtree_node_t                 node;      /* key: crc32 of name */

    ngx_uint_t                        rr;        /* round robin cursor */
    ngx_uint_t                        inflight;
    ngx_msec_t                        ttfb_ewma; /* ms, 0: not measured */
    ngx_uint_t                        failures;  /* consecutive */
    ngx_uint_t                        breaker;   /* CLOSED, OPEN, HALF_OPEN */
    uint64_t                          cooldown_until;  /* epoch ms */
    uint64_t                          disabled;  /* 401/403 seen: epoch ms */
    ngx_uint_t                        backoff;   /* 429s in a row */
    ngx_uint_t                        unhealthy; /* health check: provider */
    uint64_t                          health_next;  /* epoch ms */
    ngx_uint_t                        health_fails;   /* in a row */
    ngx_uint_t                        health_passes;  /* in a row */

    /* requests and tokens per minute, hour and day (rpm tpm rph ...) */
    ngx_http_conductor_window_t       win[NGX_HTTP_CONDUCTOR_NLIMITS];

    /* the provider's own view, from x-ratelimit-remaining-* */
    int64_t                           remaining_requests;  /* -1: unknown */
    int64_t                           remaining_tokens;

    uint64_t                          requests;  /* attempts sent */
    uint64_t                          responses; /* answered 2xx */
    uint64_t                          errors[NGX_HTTP_CONDUCTOR_NERRORS];
    uint64_t                          prompt_tokens;
    uint64_t                          completion_tokens;
    uint64_t                          cached_tokens;
    uint64_t                          cache_creation_tokens;
    uint64_t                          reasoning_tokens;
    ngx_http_conductor_money_t        cost;
    uint64_t                          estimated; /* usage not in the answer */
    uint64_t                          unpriced;  /* answers without a price */
    uint64_t                          ttfb_sum;  /* ms, over responses */

    /* a client's budgets, by period (day, month, total) */
    ngx_http_conductor_spend_t        spend[NGX_HTTP_CONDUCTOR_NPERIODS];

    ngx_http_conductor_sync_t        *sync;      /* NULL: not shared */

    /* its minutes in the history table, NULL: none */
    struct ngx_http_conductor_history_series_s  *history;

    /* in flight per process slot: what a dead worker held is known (a
     * worker's connections bound it far below 65535) */
    uint16_t                          held[NGX_HTTP_CONDUCTOR_SLOTS];

    size_t                            len;
    u_char                            name[1];
} ngx_http_conductor_node_t;


/* a process that holds counts in the zone */
typedef struct {
    ngx_pid_t                         pid;       /* 0: free */
    ngx_uint_t                        queued;    /* its queue places */
} ngx_http_conductor_slot_t;


typedef struct {
    ngx_rbtree_t                      rbtree;
    ngx_rbtree_node_t                 sentinel;
    ngx_uint_t                        queued;    /* waiting for room */
    ngx_http_conductor_node_t         gateway;   /* answers of its own */
    ngx_http_conductor_slot_t         slots[NGX_HTTP_CONDUCTOR_SLOTS];
    struct ngx_http_conductor_redis_sh_s  *redis;  /* NULL: not yet */
    uint64_t                          sync_next;  /* the fleet push lease */
    uint64_t                          sync_last;  /* epoch ms of the last
                                                   * push answered */
    uint64_t                          sync_errors;  /* pushes that failed */
    uint64_t                          state_next;  /* epoch ms: the state
                                                      file's next write */
    struct ngx_http_conductor_history_s  *history;  /* NULL: none */
} ngx_http_conductor_shctx_t;


/* what an attempt's answer (or its failure) says, for the ledger */
typedef struct {
    ngx_uint_t                        status;    /* the provider's, or 0 */
    ngx_int_t                         err;       /* class, NGX_DECLINED */
    ngx_msec_t                        ttfb;
    uint64_t                          cooldown;  /* ms the provider asks */
    uint64_t                          exhausted_until;  /* epoch ms */
    int64_t                           remaining_requests;  /* -1: unknown */
    int64_t                           remaining_tokens;
} ngx_http_conductor_outcome_t;


typedef struct {
    ngx_str_t                         name;
    ngx_str_t                         secret;
    ngx_str_t                         header;    /* header value to send */
    ngx_uint_t                        limit[NGX_HTTP_CONDUCTOR_NLIMITS];
    ngx_uint_t                        max_inflight;
    ngx_http_conductor_provider_t    *provider;
    ngx_http_conductor_node_t        *node;
    ngx_str_t                         fleet;     /* its Redis name, per
                                                    worker; empty: none */
} ngx_http_conductor_key_t;


typedef struct {
    ngx_str_t                         model;
    uint64_t                          input;     /* pico-USD per token */
    uint64_t                          output;
    uint64_t                          cached_input;
    uint64_t                          cache_write;
} ngx_http_conductor_price_t;


struct ngx_http_conductor_provider_s {
    ngx_str_t                         name;
    ngx_str_t                         url;
    ngx_uint_t                        api;
    ngx_str_t                         scheme;    /* "http" or "https" */
    ngx_str_t                         host;      /* Host header */
    ngx_str_t                         sni;       /* host without port */
    ngx_str_t                         prefix;    /* path, no trailing / */
    ngx_str_t                         args;      /* the url's query */
    ngx_str_t                         headers;   /* "header" lines, CRLF */
    in_port_t                         port;
    ngx_addr_t                       *addrs;
    ngx_uint_t                        naddrs;
    ngx_uint_t                        index;
    ngx_http_conductor_node_t        *node;
    ngx_array_t                       keys;      /* ngx_http_conductor_key_t */
    ngx_array_t                       prices;    /* of price_t */
#if (NGX_HTTP_SSL)
    ngx_ssl_session_t                *ssl_session;  /* per worker */
#endif
    u_char                           *file;
    ngx_uint_t                        line;

    /* health_check interval= uri= timeout= fails= passes= */
    ngx_msec_t                        hc_interval;   /* 0: none */
    ngx_msec_t                        hc_timeout;
    ngx_str_t                         hc_request;    /* the whole request */
    ngx_uint_t                        hc_fails;
    ngx_uint_t                        hc_passes;
#if (NGX_HTTP_SSL)
    ngx_ssl_t                        *hc_ssl;
#endif

    unsigned                          ssl:1;
};


/*
 * A client of the gateway (conductor_client): the digests of its keys
 * (never the keys), the aliases it may use, its limits and budgets.
 */
typedef struct {
    ngx_str_t                         name;
    ngx_array_t                      *models;    /* model_t *, NULL: all */
    ngx_array_t                      *model_names;  /* until resolved */
    ngx_uint_t                        limit[NGX_HTTP_CONDUCTOR_NLIMITS];
    ngx_uint_t                        max_inflight;
    ngx_http_conductor_money_t        budget[NGX_HTTP_CONDUCTOR_NPERIODS];
    ngx_uint_t                        budgets;   /* bit per period */
    ngx_uint_t                        nkeys;
    ngx_http_conductor_node_t        *node;
    ngx_str_t                         fleet;     /* as a key's */
    u_char                           *file;
    ngx_uint_t                        line;

    unsigned                          unpriced_tokens:1;  /* else refuse */
    unsigned                          admin:1;   /* status, key names */
} ngx_http_conductor_client_t;


/* a client key, found by its digest */
typedef struct {
    u_char                            digest[NGX_HTTP_CONDUCTOR_SHA256_LEN];
    ngx_http_conductor_client_t      *client;
} ngx_http_conductor_client_key_t;


/* one (provider model, key) a model alias can be served by */
typedef struct {
    ngx_http_conductor_provider_t    *provider;
    ngx_http_conductor_key_t         *key;
    ngx_str_t                         model;     /* empty: keep the client's */
    ngx_str_t                         model_json;  /* as a JSON string */
    ngx_uint_t                        priority;
    ngx_uint_t                        weight;
    ngx_uint_t                        index;
    ngx_http_conductor_price_t       *price;     /* NULL: unpriced */
} ngx_http_conductor_cand_t;


typedef struct {
    ngx_http_conductor_provider_t    *provider;
    ngx_str_t                         model;
    ngx_uint_t                        priority;
    ngx_uint_t                        weight;
} ngx_http_conductor_target_t;


typedef struct {
    ngx_str_t                         name;
    ngx_array_t                       targets;   /* of target_t */
    ngx_array_t                       cands[NGX_HTTP_CONDUCTOR_NDIALECTS];
    ngx_http_conductor_node_t        *node;
    unsigned                          builtin:1;
} ngx_http_conductor_model_t;


typedef struct {
    ngx_array_t                       providers; /* provider_t * */
    ngx_array_t                       models;    /* model_t * */
    ngx_hash_t                        model_hash;
    ngx_array_t                       clients;   /* client_t * */
    ngx_array_t                       client_keys;  /* by digest */
    ngx_http_conductor_model_t        passthrough[NGX_HTTP_CONDUCTOR_NDIALECTS];
    ngx_shm_zone_t                   *shm_zone;
    ngx_http_conductor_shctx_t       *sh;
    ngx_slab_pool_t                  *shpool;
    ngx_flag_t                        builtin_models;
    ngx_uint_t                        nkeys;
    ngx_uint_t                        breaker_failures;
    ngx_msec_t                        breaker_timeout;
    ngx_msec_t                        cooldown_max;   /* any hint */
    ngx_msec_t                        disabled_time;  /* until a probe */
    u_char                           *zone_file;   /* of conductor_zone */
    ngx_uint_t                        zone_line;
    struct ngx_http_conductor_redis_conf_s  *redis;  /* NULL: none */
    ngx_str_t                         state_file;  /* conductor_state_file */
    ngx_msec_t                        state_interval;
    ngx_uint_t                        history_minutes;  /* 0: off */
    ngx_uint_t                        history_recent;
#if (NGX_THREADS)
    ngx_thread_pool_t                *state_pool;
#endif
} ngx_http_conductor_main_conf_t;


typedef struct {
    ngx_flag_t                        route;
    ngx_flag_t                        models;
    ngx_uint_t                        strategy;
    ngx_int_t                         retries;
    ngx_uint_t                        unknown_reject;
    ngx_flag_t                        response_headers;
    ngx_flag_t                        allow_override;
    ngx_msec_t                        mock_delay;  /* between mock events */
    ngx_http_conductor_provider_t    *usage_provider;  /* conductor_usage */
    ngx_uint_t                        failover;  /* next_upstream mask */
    ngx_msec_t                        queue_timeout;   /* 0: no queue */
    ngx_uint_t                        queue_max;
    ngx_msec_t                        stream_idle;  /* 0: read timeout */
    ngx_uint_t                        completion_estimate;  /* tokens */
    ngx_flag_t                        auth;      /* conductor_auth */
} ngx_http_conductor_loc_conf_t;


typedef struct {
    ngx_uint_t                        keepalive;     /* cached connections */
    ngx_msec_t                        keepalive_timeout;
    ngx_uint_t                        keepalive_requests;
    ngx_queue_t                       cache;
    ngx_queue_t                       free;
} ngx_http_conductor_balancer_conf_t;


/*
 * The accounting of an answer (filters read it, the LOG phase commits it):
 * the usage the provider gave, the final usage (given, or estimated) and
 * its cost.
 */
typedef struct {
    ngx_http_conductor_provider_t    *usage_provider;  /* conductor_usage */
    ngx_http_conductor_usage_t        usage;     /* as the provider said */
    ngx_http_conductor_usage_t        final;     /* said, or estimated */
    ngx_http_conductor_money_t        cost;
    ngx_http_conductor_sse_t         *sse;       /* a stream's parser */
    ngx_http_conductor_sse_scan_t    *scan;      /* a long JSON body's */
    u_char                           *json;      /* the answer gathered */
    size_t                            json_len;
    size_t                            json_size;
    off_t                             body_bytes;  /* of the answer */

    unsigned                          json_done:1; /* read in one piece */
    unsigned                          final_done:1;
    unsigned                          estimated:1;
    unsigned                          priced:1;
} ngx_http_conductor_account_t;


/*
 * A stream (SSE answer) on its way to the client: the usage-only chunk
 * taken out for a client that did not ask for it (strip mode), and its
 * end, judged complete or not (a cut or stalled stream ends with an error
 * event of the gateway's).
 */
typedef struct {
    ngx_http_conductor_strip_t       *strip;     /* NULL: not strip mode */
    ngx_buf_t                        *strip_buf; /* the piece being fed */
    ngx_chain_t                     **strip_ll;  /* where its output goes */
    ngx_chain_t                      *free;      /* our own buffers */
    ngx_chain_t                      *busy;
    void                            (*upstream_finalize)(
                                          ngx_http_request_t *r,
                                          ngx_int_t rc);  /* the proxy's */
    ngx_event_t                       idle_ev;   /* conductor_stream_timeout */
    ngx_msec_t                        last_data; /* when a byte came */
    u_char                            last2[2];  /* the stream's last bytes */
    ngx_uint_t                        stream_error;  /* 0, ERR_STREAM_* */

    unsigned                          strip_used:1;  /* strip_buf is sent */
    unsigned                          stream_done:1;   /* its end judged */
    unsigned                          stream_ended:1;  /* we ended it */
    unsigned                          passing:1;   /* our own end event */
    unsigned                          keepalive:1;  /* before a failed end */
    unsigned                          finished:1;  /* the body ended */
} ngx_http_conductor_answer_t;


typedef struct {
    ngx_http_request_t               *request;
    ngx_http_conductor_client_t      *client;    /* NULL: no client key */
    ngx_http_conductor_model_t       *model;     /* NULL: unknown model */
    ngx_str_t                         alias;     /* what the client asked */
    ngx_uint_t                        endpoint;
    ngx_uint_t                        strategy;

    /* the client's body and the edits every attempt shares */
    u_char                           *body;
    size_t                            body_len;
    ngx_str_t                        *model_spans;  /* every "model" */
    ngx_uint_t                        nmodel_spans;
    ngx_http_conductor_json_edit_t   *edits;     /* by place in the body */
    ngx_uint_t                        nedits;
    ngx_uint_t                        edits_max;

    ngx_http_conductor_cand_t        *cands;
    ngx_uint_t                        ncands;
    uint64_t                          tried[NGX_HTTP_CONDUCTOR_MAX_CANDS
                                            / 64];  /* bitmap over cands */
    uint64_t                          fleet_refused[NGX_HTTP_CONDUCTOR_MAX_CANDS
                                            / 64];  /* tried, never sent:
                                                       sync=0 said no */
    ngx_http_conductor_cand_t        *cand;      /* the current attempt's */
    ngx_http_conductor_cand_t        *winner;    /* the one that answered */
    ngx_http_conductor_cand_t        *held;      /* in flight on its key */
    ngx_uint_t                        attempts;
    ngx_uint_t                        max_attempts;
    uint64_t                          estimate;  /* tokens, before usage */
    uint64_t                          estimate_out;  /* of it, output */
    /* what the client's budgets hold for the request, by period */
    ngx_http_conductor_money_t        cost_reserved[
                                          NGX_HTTP_CONDUCTOR_NPERIODS];
    time_t                            client_reserved_at;
    ngx_uint_t                        client_limit;  /* the one reached */
    ngx_uint_t                        budget_period;  /* the one spent */
    time_t                            budget_ends;    /* 0: never */
    uint64_t                          reserved;  /* tokens held on cand */
    time_t                            reserved_at;
    ngx_msec_t                        retry_after;  /* when all are full */
    ngx_uint_t                        refusal;   /* WAIT_LIMIT, _FAILING */
    ngx_http_conductor_provider_t    *routing_provider;  /* the client's */
    ngx_event_t                       queue_ev;
    ngx_msec_t                        queue_deadline;
    ngx_uint_t                        peer_gets; /* balancer calls */
    struct ngx_http_conductor_exact_s  *exact;   /* sync=0: the wait */
    uint64_t                          key_rid;   /* held in Redis, 0: no */
    uint64_t                          client_rid;
    ngx_http_conductor_balancer_conf_t  *bcf;

    ngx_int_t                         status;    /* of the precontent phase */
    const char                       *error;     /* message for the client */
    const char                       *error_code;
    const char                       *error_type;  /* OpenAI's, if not
                                                    * the status's */

    ngx_chain_t                      *error_out; /* replaced error body */
    ngx_msec_t                        start;
    ngx_msec_t                        ttfb;      /* to the answer's header */

    ngx_http_conductor_account_t      account;   /* what the answer used */
    ngx_http_conductor_answer_t       answer;    /* a stream on its way */

    unsigned                          stream:1;
    unsigned                          client_usage:1;  /* asked for it */
    unsigned                          added_usage:1;   /* we asked */
    unsigned                          more:1;    /* another had room */
    unsigned                          held_slot:1;  /* in the slot too */
    unsigned                          retry_same:1;
    unsigned                          observe:2;   /* NONE, JSON, SSE */
    unsigned                          committed:1;
    unsigned                          queued:1;
    unsigned                          error_replace:1;
    unsigned                          error_sent:1;
    unsigned                          client_held:1;  /* reserved on it */
    unsigned                          client_slot:1;  /* in the slot too */
    unsigned                          budget_held:1;  /* by others' */
    unsigned                          routed:1;  /* the handler ran */
    unsigned                          exact_done:1;    /* sync=0: settled */
    unsigned                          exact_client:1;  /* asked Redis */
    unsigned                          exact_refused:1; /* a key, by Redis */
    unsigned                          queue_once:1;  /* deadline, cleanup */
} ngx_http_conductor_ctx_t;


extern ngx_module_t  ngx_http_conductor_module;

extern ngx_str_t     ngx_http_conductor_endpoint_paths[];
extern ngx_str_t     ngx_http_conductor_strategy_names[];
extern ngx_str_t     ngx_http_conductor_limit_names[];   /* "rpm=" ... */
extern time_t        ngx_http_conductor_periods[];


/* conf */
char *ngx_http_conductor_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_conductor_provider_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_conductor_model_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_conductor_strategy(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
#define NGX_HTTP_CONDUCTOR_PARAM_NUM   0   /* out: ngx_uint_t, > 0 */
#define NGX_HTTP_CONDUCTOR_PARAM_MSEC  1   /* out: ngx_msec_t, > 0 */

typedef struct {
    const char                       *name;
    ngx_uint_t                        type;
    void                             *out;
} ngx_http_conductor_param_t;

char *ngx_http_conductor_params(ngx_conf_t *cf, ngx_uint_t first,
    ngx_http_conductor_param_t *params);
ngx_int_t ngx_http_conductor_param_num(ngx_str_t *arg, const char *name,
    ngx_uint_t *out);
ngx_int_t ngx_http_conductor_param_msec(ngx_str_t *arg, const char *name,
    ngx_msec_t *out);
char *ngx_http_conductor_breaker_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_conductor_queue_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_conductor_stream_timeout_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_conductor_cooldown_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_conductor_estimate_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_conductor_failover_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_conductor_init_models(ngx_conf_t *cf,
    ngx_http_conductor_main_conf_t *cmcf);
ngx_http_conductor_provider_t *ngx_http_conductor_find_provider(
    ngx_http_conductor_main_conf_t *cmcf, ngx_str_t *name);
char *ngx_http_conductor_read_secret(ngx_conf_t *cf, ngx_str_t *source,
    ngx_str_t *key_name, ngx_str_t *secret);
ngx_int_t ngx_http_conductor_valid_name(ngx_str_t *name);
ngx_int_t ngx_http_conductor_parse_limit(ngx_str_t *v, ngx_uint_t *limit,
    ngx_uint_t *max_inflight);

/* clients */
char *ngx_http_conductor_client_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_conductor_init_clients(ngx_conf_t *cf,
    ngx_http_conductor_main_conf_t *cmcf);
ngx_int_t ngx_http_conductor_auth_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_conductor_client_may_use(ngx_http_conductor_client_t *cl,
    ngx_http_conductor_model_t *m);
uint64_t ngx_http_conductor_budget_period(ngx_uint_t period, time_t now,
    time_t *ends);
uint64_t ngx_http_conductor_days_from_civil(ngx_uint_t y, ngx_uint_t m,
    ngx_uint_t d);
ngx_str_t *ngx_http_conductor_budget_period_name(ngx_uint_t period);

/* shm */
ngx_int_t ngx_http_conductor_init_zone(ngx_shm_zone_t *shm_zone, void *data);
void ngx_http_conductor_shm_lock(ngx_http_conductor_main_conf_t *cmcf);
void ngx_http_conductor_shm_unlock(ngx_http_conductor_main_conf_t *cmcf);
ngx_http_conductor_node_t *ngx_http_conductor_node_find(
    ngx_http_conductor_main_conf_t *cmcf, ngx_str_t *name);

/* health */
char *ngx_http_conductor_health_conf(ngx_conf_t *cf,
    ngx_http_conductor_provider_t *p);
ngx_int_t ngx_http_conductor_health_init_process(ngx_cycle_t *cycle);

/* status */
char *ngx_http_conductor_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
struct json_t *ngx_http_conductor_json_str(ngx_pool_t *pool, ngx_str_t *s);

/*
 * history: the last requests and per-minute buckets, in the zone.  A
 * record names its client, model, provider and key by their zone nodes,
 * which live as long as the zone (a reload keeps them, names included);
 * what is not a node is a bounded copy.  Never a secret, never content.
 */

#define NGX_HTTP_CONDUCTOR_HISTORY_NAME     64   /* bytes of a copied name */
#define NGX_HTTP_CONDUCTOR_HISTORY_NONE     0xffffffff  /* no ttfb */

#define NGX_HTTP_CONDUCTOR_HISTORY_STREAM     0x01
#define NGX_HTTP_CONDUCTOR_HISTORY_USAGE      0x02   /* usage counted */
#define NGX_HTTP_CONDUCTOR_HISTORY_ESTIMATED  0x04
#define NGX_HTTP_CONDUCTOR_HISTORY_PRICED     0x08
#define NGX_HTTP_CONDUCTOR_HISTORY_ALIAS      0x10   /* the model: text */

/* conductor_history's defaults: window=3h recent=200 */
#define NGX_HTTP_CONDUCTOR_HISTORY_MINUTES  180
#define NGX_HTTP_CONDUCTOR_HISTORY_RECENT   200

typedef struct {
    uint64_t                          ticket;    /* its number, from 0 */
    uint64_t                          time;      /* start, epoch ms */
    ngx_http_conductor_node_t        *client;    /* NULL: none */
    ngx_http_conductor_node_t        *model;     /* the alias's (series) */
    ngx_http_conductor_node_t        *provider;  /* the last attempt's */
    ngx_http_conductor_node_t        *key;
    uint64_t                          prompt;
    uint64_t                          completion;
    uint64_t                          cached;
    uint64_t                          cost;      /* pico-USD */
    uint32_t                          ttfb;      /* ms, or HISTORY_NONE */
    uint32_t                          duration;  /* ms */
    uint16_t                          status;
    uint8_t                           attempts;
    uint8_t                           endpoint;
    uint8_t                           flags;     /* HISTORY_STREAM ... */
    uint8_t                           alias_len;
    uint8_t                           upstream_len;  /* 0: none */
    /* the alias (with HISTORY_ALIAS), then the upstream model: only what
     * they take is copied into the ring */
    u_char                            text[2
                                           * NGX_HTTP_CONDUCTOR_HISTORY_NAME];
} ngx_http_conductor_history_rec_t;

char *ngx_http_conductor_history_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_conductor_history_init_zone(
    ngx_http_conductor_main_conf_t *cmcf, ngx_log_t *log);
ngx_http_conductor_history_rec_t *ngx_http_conductor_history_record(
    ngx_http_request_t *r, ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_history_rec_t *rec);
void ngx_http_conductor_history_add(ngx_http_conductor_shctx_t *sh,
    ngx_http_conductor_history_rec_t *rec, time_t now);
ngx_int_t ngx_http_conductor_history_args(ngx_http_request_t *r,
    ngx_int_t *recent, ngx_uint_t *minutes, const char **error);
ngx_int_t ngx_http_conductor_history_json(
    ngx_http_conductor_main_conf_t *cmcf, ngx_pool_t *pool,
    struct json_t *root, ngx_int_t recent, ngx_uint_t minutes, time_t now);

/* route */
ngx_int_t ngx_http_conductor_route_handler(ngx_http_request_t *r);
ngx_http_conductor_ctx_t *ngx_http_conductor_ctx_create(
    ngx_http_request_t *r, ngx_int_t *ep);

/* the error dialect follows the endpoint: Anthropic's for /v1/messages */
#define ngx_http_conductor_dialect(ctx)                                      \
    ((ctx)->endpoint == NGX_HTTP_CONDUCTOR_EP_MESSAGES                       \
     ? NGX_HTTP_CONDUCTOR_ANTHROPIC : NGX_HTTP_CONDUCTOR_OPENAI)

/* queue */
ngx_int_t ngx_http_conductor_enqueue(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_loc_conf_t *lcf);
ngx_int_t ngx_http_conductor_refuse(ngx_http_conductor_ctx_t *ctx);

/* attempt */
ngx_int_t ngx_http_conductor_attempt(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
ngx_int_t ngx_http_conductor_attempt_request(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_uint_t recreate);

/* pick: the strategies */
ngx_http_conductor_cand_t *ngx_http_conductor_choose(
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t **el,
    ngx_uint_t n);
uint64_t ngx_http_conductor_now_ms(void);

/* ledger */
ngx_int_t ngx_http_conductor_ledger_init_process(ngx_cycle_t *cycle);
void ngx_http_conductor_ledger_exit_process(ngx_cycle_t *cycle);
ngx_http_conductor_cand_t *ngx_http_conductor_ledger_pick(
    ngx_http_request_t *r, ngx_http_conductor_ctx_t *ctx);
void ngx_http_conductor_ledger_hints(ngx_http_request_t *r,
    ngx_http_conductor_outcome_t *o);
void ngx_http_conductor_ledger_fail(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_outcome_t *o);
void ngx_http_conductor_ledger_unpick(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_uint_t client);
void ngx_http_conductor_ledger_commit(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_outcome_t *o,
    ngx_int_t err, ngx_http_conductor_history_rec_t *rec);
ngx_int_t ngx_http_conductor_ledger_class(ngx_uint_t status,
    ngx_int_t fault);
ngx_int_t ngx_http_conductor_ledger_enqueue(ngx_http_request_t *r,
    ngx_uint_t max);
void ngx_http_conductor_ledger_dequeue(ngx_http_request_t *r);
ngx_uint_t ngx_http_conductor_ledger_health_lease(
    ngx_http_conductor_main_conf_t *cmcf, ngx_http_conductor_provider_t *p,
    uint64_t now_ms);
void ngx_http_conductor_ledger_health(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_provider_t *p, ngx_uint_t ok);

/* sync: the fleet's limits through Redis */
ngx_int_t ngx_http_conductor_sync_init_zone(
    ngx_http_conductor_main_conf_t *cmcf);
ngx_int_t ngx_http_conductor_sync_init_process(ngx_cycle_t *cycle);
void ngx_http_conductor_sync_window(ngx_http_conductor_node_t *node,
    ngx_uint_t i, time_t when, int64_t n);
void ngx_http_conductor_sync_spend(ngx_http_conductor_node_t *node,
    ngx_uint_t p, uint64_t period, ngx_http_conductor_money_t cost);

/* sync=0: every reservation settled in Redis (NGX_DONE: it waits) */
ngx_int_t ngx_http_conductor_exact_reserve(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
void ngx_http_conductor_exact_force(ngx_http_conductor_ctx_t *ctx);
void ngx_http_conductor_exact_give_back(ngx_http_conductor_ctx_t *ctx,
    uint64_t used, ngx_uint_t all);

/* the fleet's in flight beside a node's own */
#define ngx_http_conductor_inflight(node)                                     \
    ((node)->inflight + ((node)->sync ? (node)->sync->fleet_inflight : 0))

/* balancer */
char *ngx_http_conductor_balancer(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* filter */
ngx_int_t ngx_http_conductor_filter_init(ngx_conf_t *cf);

#define NGX_HTTP_CONDUCTOR_OBSERVE_NONE  0
#define NGX_HTTP_CONDUCTOR_OBSERVE_JSON  1
#define NGX_HTTP_CONDUCTOR_OBSERVE_SSE   2

/* account */
ngx_int_t ngx_http_conductor_log_handler(ngx_http_request_t *r);
ngx_http_conductor_usage_t *ngx_http_conductor_final_usage(
    ngx_http_request_t *r, ngx_http_conductor_ctx_t *ctx);
ngx_http_conductor_price_t *ngx_http_conductor_find_price(
    ngx_http_conductor_provider_t *p, ngx_str_t *model);
ngx_http_conductor_price_t *ngx_http_conductor_price_of(
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t *cand);
char *ngx_http_conductor_usage(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* errors: what a status is called in each dialect */
typedef struct {
    ngx_uint_t                        status;    /* 0: by class */
    const char                       *type[NGX_HTTP_CONDUCTOR_NDIALECTS];
    const char                       *message;   /* when none is given */
} ngx_http_conductor_error_kind_t;

const ngx_http_conductor_error_kind_t *ngx_http_conductor_error_kind(
    ngx_uint_t status);

#define NGX_HTTP_CONDUCTOR_MESSAGE_LEN  512

const char *ngx_http_conductor_error_message(ngx_http_request_t *r,
    const char *fmt, ...);

/* models list and the embedded mock provider */
char *ngx_http_conductor_models(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_conductor_mock(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* variables */
ngx_int_t ngx_http_conductor_add_variables(ngx_conf_t *cf);

/* redact: a writer on every error log that keeps client keys out */
ngx_int_t ngx_http_conductor_redact_init(ngx_conf_t *cf);

/* state: the zone's counters across a restart */
char *ngx_http_conductor_state_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_conductor_state_load(ngx_http_conductor_main_conf_t *cmcf,
    ngx_log_t *log);
ngx_int_t ngx_http_conductor_state_init_process(ngx_cycle_t *cycle);
void ngx_http_conductor_state_exit_process(ngx_cycle_t *cycle);


/*
 * redis: the fleet store's connection (conductor_redis), one per worker.
 * hiredis is the codec only; the connection is nginx's own.
 */

#define NGX_HTTP_CONDUCTOR_REDIS_DOWN        0
#define NGX_HTTP_CONDUCTOR_REDIS_CONNECTING  1
#define NGX_HTTP_CONDUCTOR_REDIS_READY       2

#define NGX_HTTP_CONDUCTOR_REDIS_LOCAL       0   /* on_failure=local */
#define NGX_HTTP_CONDUCTOR_REDIS_REFUSE      1   /* on_failure=refuse */

/* commands waiting for their replies, per worker: a hung Redis is bounded */
#define NGX_HTTP_CONDUCTOR_REDIS_MAX_PENDING 10000


/* hiredis's: the files that use it include it */
struct redisReply;

typedef struct ngx_http_conductor_redis_conf_s
    ngx_http_conductor_redis_conf_t;
typedef struct ngx_http_conductor_redis_sh_s  ngx_http_conductor_redis_sh_t;
typedef struct ngx_http_conductor_redis_cmd_s  ngx_http_conductor_redis_cmd_t;


struct ngx_http_conductor_redis_conf_s {
    ngx_str_t                         url;       /* as written: no secret */
    ngx_str_t                         host;      /* NUL-terminated */
    in_port_t                         port;
    ngx_addr_t                       *addrs;     /* resolved when loaded */
    ngx_uint_t                        naddrs;
    ngx_uint_t                        db;
    ngx_str_t                         user;      /* empty: default user */
    ngx_str_t                         password;  /* empty: no AUTH */
    ngx_str_t                         prefix;    /* of every key */
    ngx_msec_t                        sync;      /* 0: per reservation */
    ngx_msec_t                        timeout;   /* of every command */
    ngx_uint_t                        on_failure;  /* LOCAL, REFUSE */
    ngx_str_t                         ca;        /* empty: system's */
#if (NGX_HTTP_SSL)
    ngx_ssl_t                        *ssl;
#endif

    unsigned                          tls:1;     /* rediss:// */
    unsigned                          host_is_ip:1;
};


/* one worker's connection, as the status output shows it */
typedef struct {
    ngx_pid_t                         pid;       /* 0: free */
    ngx_uint_t                        state;     /* DOWN, CONNECTING, READY */
    ngx_uint_t                        pending;   /* commands in flight */
    uint64_t                          last_reply;  /* epoch ms, 0: never */
} ngx_http_conductor_redis_worker_t;


/* in the zone: every worker's counters (atomic), and each one's state */
struct ngx_http_conductor_redis_sh_s {
    ngx_atomic_t                      commands;  /* sent */
    ngx_atomic_t                      errors;    /* all three kinds below */
    ngx_atomic_t                      timeouts;
    ngx_atomic_t                      conn_errors;
    ngx_atomic_t                      error_replies;
    ngx_atomic_t                      reconnects;  /* attempts after the
                                                    * first */
    ngx_http_conductor_redis_worker_t workers[NGX_HTTP_CONDUCTOR_SLOTS];
};


/*
 * A command's handler gets its reply, or NULL when the command failed
 * (timeout, connection lost); the reply is freed once it returns.
 */
typedef void (*ngx_http_conductor_redis_handler_pt)(void *data,
    struct redisReply *reply);

/* what runs every sync= interval while the connection is ready */
typedef void (*ngx_http_conductor_redis_tick_pt)(
    ngx_http_conductor_redis_conf_t *rcf);

extern ngx_http_conductor_redis_tick_pt  ngx_http_conductor_redis_tick;

char *ngx_http_conductor_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_conductor_redis_init_process(ngx_cycle_t *cycle);
void ngx_http_conductor_redis_exit_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_conductor_redis_command(ngx_uint_t argc,
    const char **argv, const size_t *argvlen,
    ngx_http_conductor_redis_handler_pt handler, void *data,
    ngx_http_conductor_redis_cmd_t **cmd);
void ngx_http_conductor_redis_cancel(ngx_http_conductor_redis_cmd_t *cmd);
ngx_uint_t ngx_http_conductor_redis_state(void);
ngx_uint_t ngx_http_conductor_redis_generation(void);
ngx_int_t ngx_http_conductor_redis_status(struct json_t *obj);


#endif /* _NGX_HTTP_CONDUCTOR_H_INCLUDED_ */
