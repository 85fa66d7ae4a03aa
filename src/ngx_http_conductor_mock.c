
/*
 * conductor_mock: an embedded mock LLM provider, so that the shipped
 * configuration runs with no API key.  It answers the OpenAI (chat
 * completions, completions, embeddings, responses, models) and Anthropic
 * (messages) endpoints, in JSON and in SSE streams, in the shapes the
 * official SDKs parse.
 *
 * Every answer is a template: "$x" placeholders are filled from the request
 * (model, reply, word, token counts), and some expand to other templates.
 * The same walk measures and writes, so a buffer is allocated exactly once.
 */


#include "ngx_http_conductor.h"


#define NGX_HTTP_CONDUCTOR_MOCK_MODELS    NGX_HTTP_CONDUCTOR_NEPS
#define NGX_HTTP_CONDUCTOR_MOCK_NONE      (NGX_HTTP_CONDUCTOR_NEPS + 1)

/* an event is sent once per word of the reply */
#define NGX_HTTP_CONDUCTOR_MOCK_WORDS     1
/* an event is sent only when stream_options.include_usage is true */
#define NGX_HTTP_CONDUCTOR_MOCK_USAGE     2

/* indexes into ngx_http_conductor_mock_errors */
#define NGX_HTTP_CONDUCTOR_MOCK_E400      0
#define NGX_HTTP_CONDUCTOR_MOCK_E404      1
#define NGX_HTTP_CONDUCTOR_MOCK_E405      2


typedef struct {
    const char                       *tpl;
    ngx_uint_t                        flags;
} ngx_http_conductor_mock_event_t;


typedef struct {
    const char                       *json;    /* the non-stream answer */
    ngx_http_conductor_mock_event_t  *events;  /* the stream; NULL: none */
} ngx_http_conductor_mock_shape_t;


/* the type of an error follows from its status: see errors.c */
typedef struct {
    ngx_int_t                         status;
    const char                       *message;
} ngx_http_conductor_mock_error_t;


typedef struct {
    ngx_http_request_t               *request;
    ngx_str_t                         model;     /* decoded */
    ngx_str_t                         text;      /* the reply, decoded */
    ngx_str_t                         word;      /* the stream's current */
    ngx_uint_t                        prompt;
    ngx_uint_t                        completion;
    ngx_uint_t                        seq;       /* sequence_number */
    time_t                            created;
    ngx_http_conductor_mock_error_t  *error;
    ngx_uint_t                        dialect;
    ngx_chain_t                      *out;       /* events not sent yet */
    ngx_msec_t                        delay;
    ngx_event_t                       timer;
    unsigned                          usage:1;   /* include_usage */
    unsigned                          base64:1;  /* encoding_format */
} ngx_http_conductor_mock_ctx_t;


static ngx_int_t ngx_http_conductor_mock_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_conductor_mock_endpoint(ngx_str_t *uri);
static void ngx_http_conductor_mock_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_conductor_mock_reply(ngx_http_request_t *r);
static ngx_int_t ngx_http_conductor_mock_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_http_conductor_json_member_t *ngx_http_conductor_mock_member(
    ngx_http_conductor_json_member_t *members, size_t n, const char *name,
    int type);
static u_char *ngx_http_conductor_mock_word_end(u_char *p, u_char *end);
static ngx_int_t ngx_http_conductor_mock_error(ngx_http_request_t *r,
    ngx_uint_t ep, ngx_uint_t n);
static ngx_int_t ngx_http_conductor_mock_json(ngx_http_request_t *r,
    ngx_http_conductor_mock_ctx_t *ctx, ngx_int_t status, const char *tpl);
static ngx_int_t ngx_http_conductor_mock_stream(ngx_http_request_t *r,
    ngx_http_conductor_mock_ctx_t *ctx, ngx_http_conductor_mock_event_t *ev);
static void ngx_http_conductor_mock_tick(ngx_event_t *ev);
static ngx_int_t ngx_http_conductor_mock_send_next(ngx_http_request_t *r,
    ngx_http_conductor_mock_ctx_t *ctx);
static void ngx_http_conductor_mock_cleanup(void *data);
static ngx_chain_t *ngx_http_conductor_mock_buf(ngx_http_request_t *r,
    ngx_http_conductor_mock_ctx_t *ctx, const char *tpl);
static size_t ngx_http_conductor_mock_render(u_char *dst, const char *tpl,
    ngx_http_conductor_mock_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_mock_header(ngx_http_request_t *r,
    ngx_int_t status, const char *type);
static ngx_int_t ngx_http_conductor_mock_add_header(ngx_http_request_t *r,
    const char *key, const char *value);


static ngx_str_t  ngx_http_conductor_mock_models_path =
    ngx_string("/models");


/*
 * Placeholders: $m model, $t reply, $w current word (JSON strings);
 * $T created, $p prompt, $c completion, $s total tokens, $n sequence
 * number; $u ',"usage":null' when usage was asked for; $e the embedding;
 * $E, $M error type and message.  $U, $P, $I, $R expand to the templates
 * below.
 */

/* $U: OpenAI usage */
static const char  ngx_http_conductor_mock_usage[] =
    "{\"prompt_tokens\":$p,\"completion_tokens\":$c,\"total_tokens\":$s}";

/* $P: the responses API's output_text part */
static const char  ngx_http_conductor_mock_part[] =
    "{\"type\":\"output_text\",\"text\":$t,\"annotations\":[]}";

/* $I: the responses API's message item */
static const char  ngx_http_conductor_mock_item[] =
    "{\"type\":\"message\",\"id\":\"msg_mock\",\"status\":\"completed\","
    "\"role\":\"assistant\",\"content\":[$P]}";

/* $R: the responses API's response */
static const char  ngx_http_conductor_mock_response[] =
    "{\"id\":\"resp_mock\",\"object\":\"response\",\"created_at\":$T,"
    "\"status\":\"completed\",\"model\":$m,\"output\":[$I],"
    "\"usage\":{\"input_tokens\":$p,"
    "\"input_tokens_details\":{\"cached_tokens\":0},"
    "\"output_tokens\":$c,"
    "\"output_tokens_details\":{\"reasoning_tokens\":0},"
    "\"total_tokens\":$s}}";


#define NGX_HTTP_CONDUCTOR_MOCK_CHAT_CHUNK                                    \
    "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","   \
    "\"created\":$T,\"model\":$m,\"choices\":["

#define NGX_HTTP_CONDUCTOR_MOCK_TEXT_CHUNK                                    \
    "data: {\"id\":\"cmpl-mock\",\"object\":\"text_completion\","             \
    "\"created\":$T,\"model\":$m,\"choices\":["

#define NGX_HTTP_CONDUCTOR_MOCK_TEXT_DELTA                                    \
    "\"item_id\":\"msg_mock\",\"output_index\":0,\"content_index\":0,"

#define NGX_HTTP_CONDUCTOR_MOCK_DONE  { "data: [DONE]\n\n", 0 }


static ngx_http_conductor_mock_event_t  ngx_http_conductor_mock_chat[] = {

    { NGX_HTTP_CONDUCTOR_MOCK_CHAT_CHUNK
      "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
      "\"logprobs\":null,\"finish_reason\":null}]$u}\n\n", 0 },

    { NGX_HTTP_CONDUCTOR_MOCK_CHAT_CHUNK
      "{\"index\":0,\"delta\":{\"content\":$w},"
      "\"logprobs\":null,\"finish_reason\":null}]$u}\n\n",
      NGX_HTTP_CONDUCTOR_MOCK_WORDS },

    { NGX_HTTP_CONDUCTOR_MOCK_CHAT_CHUNK
      "{\"index\":0,\"delta\":{},"
      "\"logprobs\":null,\"finish_reason\":\"stop\"}]$u}\n\n", 0 },

    { NGX_HTTP_CONDUCTOR_MOCK_CHAT_CHUNK "],\"usage\":$U}\n\n",
      NGX_HTTP_CONDUCTOR_MOCK_USAGE },

    NGX_HTTP_CONDUCTOR_MOCK_DONE,
    { NULL, 0 }
};


static ngx_http_conductor_mock_event_t  ngx_http_conductor_mock_text[] = {

    { NGX_HTTP_CONDUCTOR_MOCK_TEXT_CHUNK
      "{\"text\":$w,\"index\":0,\"logprobs\":null,\"finish_reason\":null}]"
      "$u}\n\n",
      NGX_HTTP_CONDUCTOR_MOCK_WORDS },

    { NGX_HTTP_CONDUCTOR_MOCK_TEXT_CHUNK
      "{\"text\":\"\",\"index\":0,\"logprobs\":null,"
      "\"finish_reason\":\"stop\"}]$u}\n\n", 0 },

    { NGX_HTTP_CONDUCTOR_MOCK_TEXT_CHUNK "],\"usage\":$U}\n\n",
      NGX_HTTP_CONDUCTOR_MOCK_USAGE },

    NGX_HTTP_CONDUCTOR_MOCK_DONE,
    { NULL, 0 }
};


static ngx_http_conductor_mock_event_t  ngx_http_conductor_mock_responses[] = {

    { "event: response.created\n"
      "data: {\"type\":\"response.created\",\"sequence_number\":$n,"
      "\"response\":{\"id\":\"resp_mock\",\"object\":\"response\","
      "\"created_at\":$T,\"status\":\"in_progress\",\"model\":$m,"
      "\"output\":[],\"usage\":null}}\n\n", 0 },

    { "event: response.output_item.added\n"
      "data: {\"type\":\"response.output_item.added\",\"sequence_number\":$n,"
      "\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_mock\","
      "\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}}"
      "\n\n", 0 },

    { "event: response.content_part.added\n"
      "data: {\"type\":\"response.content_part.added\","
      "\"sequence_number\":$n," NGX_HTTP_CONDUCTOR_MOCK_TEXT_DELTA
      "\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[]}}"
      "\n\n", 0 },

    { "event: response.output_text.delta\n"
      "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":$n,"
      NGX_HTTP_CONDUCTOR_MOCK_TEXT_DELTA "\"delta\":$w}\n\n",
      NGX_HTTP_CONDUCTOR_MOCK_WORDS },

    { "event: response.output_text.done\n"
      "data: {\"type\":\"response.output_text.done\",\"sequence_number\":$n,"
      NGX_HTTP_CONDUCTOR_MOCK_TEXT_DELTA "\"text\":$t}\n\n", 0 },

    { "event: response.content_part.done\n"
      "data: {\"type\":\"response.content_part.done\",\"sequence_number\":$n,"
      NGX_HTTP_CONDUCTOR_MOCK_TEXT_DELTA "\"part\":$P}\n\n", 0 },

    { "event: response.output_item.done\n"
      "data: {\"type\":\"response.output_item.done\",\"sequence_number\":$n,"
      "\"output_index\":0,\"item\":$I}\n\n", 0 },

    { "event: response.completed\n"
      "data: {\"type\":\"response.completed\",\"sequence_number\":$n,"
      "\"response\":$R}\n\n", 0 },

    { NULL, 0 }
};


static ngx_http_conductor_mock_event_t  ngx_http_conductor_mock_messages[] = {

    { "event: message_start\n"
      "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock\","
      "\"type\":\"message\",\"role\":\"assistant\",\"model\":$m,"
      "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
      "\"usage\":{\"input_tokens\":$p,\"output_tokens\":1}}}\n\n", 0 },

    { "event: content_block_start\n"
      "data: {\"type\":\"content_block_start\",\"index\":0,"
      "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n", 0 },

    { "event: content_block_delta\n"
      "data: {\"type\":\"content_block_delta\",\"index\":0,"
      "\"delta\":{\"type\":\"text_delta\",\"text\":$w}}\n\n",
      NGX_HTTP_CONDUCTOR_MOCK_WORDS },

    { "event: content_block_stop\n"
      "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n", 0 },

    { "event: message_delta\n"
      "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
      "\"end_turn\",\"stop_sequence\":null},"
      "\"usage\":{\"output_tokens\":$c}}\n\n", 0 },

    { "event: message_stop\n"
      "data: {\"type\":\"message_stop\"}\n\n", 0 },

    { NULL, 0 }
};


/* indexed by NGX_HTTP_CONDUCTOR_EP_*, then the models list */
static ngx_http_conductor_mock_shape_t  ngx_http_conductor_mock_shapes[] = {

    { "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\","
      "\"created\":$T,\"model\":$m,\"choices\":[{\"index\":0,"
      "\"message\":{\"role\":\"assistant\",\"content\":$t,\"refusal\":null},"
      "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":$U}",
      ngx_http_conductor_mock_chat },

    { "{\"id\":\"cmpl-mock\",\"object\":\"text_completion\","
      "\"created\":$T,\"model\":$m,\"choices\":[{\"text\":$t,\"index\":0,"
      "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":$U}",
      ngx_http_conductor_mock_text },

    { "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
      "\"embedding\":$e}],\"model\":$m,"
      "\"usage\":{\"prompt_tokens\":$p,\"total_tokens\":$p}}",
      NULL },

    { "$R", ngx_http_conductor_mock_responses },

    { "{\"id\":\"msg_mock\",\"type\":\"message\",\"role\":\"assistant\","
      "\"model\":$m,\"content\":[{\"type\":\"text\",\"text\":$t}],"
      "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
      "\"usage\":{\"input_tokens\":$p,\"output_tokens\":$c}}",
      ngx_http_conductor_mock_messages },

    { "{\"object\":\"list\",\"data\":[{\"id\":\"mock-model\","
      "\"object\":\"model\",\"created\":0,\"owned_by\":\"conductor\"}]}",
      NULL }
};


/* indexed by NGX_HTTP_CONDUCTOR_OPENAI, NGX_HTTP_CONDUCTOR_ANTHROPIC */
static const char  *ngx_http_conductor_mock_error_tpl[] = {
    "{\"error\":{\"message\":\"$M\",\"type\":\"$E\",\"param\":null,"
    "\"code\":null}}",
    "{\"type\":\"error\",\"error\":{\"type\":\"$E\",\"message\":\"$M\"}}"
};


static ngx_http_conductor_mock_error_t  ngx_http_conductor_mock_errors[] = {
    { NGX_HTTP_BAD_REQUEST,
      "mock provider: the request body is not a JSON object" },
    { NGX_HTTP_NOT_FOUND,
      "mock provider: unknown endpoint; it serves chat/completions, "
      "completions, embeddings, responses, messages and models" },
    { NGX_HTTP_NOT_ALLOWED,
      "mock provider: method not allowed" }
};


/* the words and token counts of the reply follow from these */
static u_char  ngx_http_conductor_mock_hello[] = "Hello from ";
static u_char  ngx_http_conductor_mock_tail[] =
    "! I am the conductor mock provider.";


char *
ngx_http_conductor_mock(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_conductor_loc_conf_t *lcf = conf;

    ngx_str_t                 *value, s;
    ngx_msec_t                 delay;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_conductor_mock_handler) {
        return "is duplicate";
    }

    if (cf->args->nelts > 1) {
        value = cf->args->elts;

        if (value[1].len <= 6
            || ngx_strncmp(value[1].data, "delay=", 6) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        s.data = value[1].data + 6;
        s.len = value[1].len - 6;

        delay = ngx_parse_time(&s, 0);

        if (delay == (ngx_msec_t) NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid delay \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        lcf->mock_delay = delay;
    }

    clcf->handler = ngx_http_conductor_mock_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_conductor_mock_handler(ngx_http_request_t *r)
{
    ngx_int_t   rc;
    ngx_uint_t  ep, methods;

    ep = ngx_http_conductor_mock_endpoint(&r->uri);

    if (ep == NGX_HTTP_CONDUCTOR_MOCK_NONE) {
        return ngx_http_conductor_mock_error(r, ep,
                                             NGX_HTTP_CONDUCTOR_MOCK_E404);
    }

    methods = (ep == NGX_HTTP_CONDUCTOR_MOCK_MODELS)
              ? (NGX_HTTP_GET|NGX_HTTP_HEAD) : NGX_HTTP_POST;

    if (!(r->method & methods)) {
        return ngx_http_conductor_mock_error(r, ep,
                                             NGX_HTTP_CONDUCTOR_MOCK_E405);
    }

    if (ep == NGX_HTTP_CONDUCTOR_MOCK_MODELS) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_conductor_mock_reply(r);
    }

    rc = ngx_http_read_client_request_body(r,
                                         ngx_http_conductor_mock_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the longest endpoint path the URI ends with */

static ngx_uint_t
ngx_http_conductor_mock_endpoint(ngx_str_t *uri)
{
    size_t      best;
    ngx_str_t  *path;
    ngx_uint_t  i, ep;

    ep = NGX_HTTP_CONDUCTOR_MOCK_NONE;
    best = 0;

    for (i = 0; i <= NGX_HTTP_CONDUCTOR_MOCK_MODELS; i++) {
        path = (i == NGX_HTTP_CONDUCTOR_MOCK_MODELS)
               ? &ngx_http_conductor_mock_models_path
               : &ngx_http_conductor_endpoint_paths[i];

        if (path->len > best
            && uri->len >= path->len
            && ngx_strncmp(uri->data + uri->len - path->len, path->data,
                           path->len)
               == 0)
        {
            best = path->len;
            ep = i;
        }
    }

    return ep;
}


static void
ngx_http_conductor_mock_body_handler(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_http_conductor_mock_reply(r));
}


static ngx_int_t
ngx_http_conductor_mock_reply(ngx_http_request_t *r)
{
    u_char                            *p;
    long                               n;
    u_char                             format[8];
    ngx_int_t                          rc;
    ngx_str_t                          body;
    ngx_uint_t                         ep;
    ngx_http_conductor_mock_ctx_t     *ctx;
    ngx_http_conductor_mock_shape_t   *shape;
    ngx_http_conductor_json_object_t   obj, opts;
    ngx_http_conductor_json_member_t  *m, *stream;
    ngx_http_conductor_json_member_t   members[NGX_HTTP_CONDUCTOR_MAX_MEMBERS];
    ngx_http_conductor_json_member_t   options[8];

    ep = ngx_http_conductor_mock_endpoint(&r->uri);
    shape = &ngx_http_conductor_mock_shapes[ep];

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_conductor_mock_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->created = ngx_time();

    if (ep == NGX_HTTP_CONDUCTOR_MOCK_MODELS) {
        return ngx_http_conductor_mock_json(r, ctx, NGX_HTTP_OK, shape->json);
    }

    if (ngx_http_conductor_mock_read_body(r, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_conductor_json_scan_object(body.data, body.len, &obj,
                                             members,
                                             NGX_HTTP_CONDUCTOR_MAX_MEMBERS);

    if (rc != NGX_HTTP_CONDUCTOR_JSON_OK
        && rc != NGX_HTTP_CONDUCTOR_JSON_TOO_MANY)
    {
        return ngx_http_conductor_mock_error(r, ep,
                                             NGX_HTTP_CONDUCTOR_MOCK_E400);
    }

    ctx->prompt = ngx_max(body.len / 4, 1);

    m = ngx_http_conductor_mock_member(members, obj.n, "model",
                                       NGX_HTTP_CONDUCTOR_JSON_STRING);

    if (m) {
        ctx->model.data = ngx_pnalloc(r->pool, m->value_len);
        if (ctx->model.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        n = ngx_http_conductor_json_string_decode(m->value, m->value_len,
                                                  ctx->model.data,
                                                  m->value_len);
        ctx->model.len = (n > 0) ? (size_t) n : 0;
    }

    if (ctx->model.len == 0) {
        ngx_str_set(&ctx->model, "mock-model");
    }

    ctx->text.len = sizeof(ngx_http_conductor_mock_hello) - 1
                    + ctx->model.len
                    + sizeof(ngx_http_conductor_mock_tail) - 1;

    ctx->text.data = ngx_pnalloc(r->pool, ctx->text.len);
    if (ctx->text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(ctx->text.data, ngx_http_conductor_mock_hello,
                   sizeof(ngx_http_conductor_mock_hello) - 1);
    p = ngx_cpymem(p, ctx->model.data, ctx->model.len);
    ngx_memcpy(p, ngx_http_conductor_mock_tail,
               sizeof(ngx_http_conductor_mock_tail) - 1);

    for (p = ctx->text.data; p < ctx->text.data + ctx->text.len; /* void */) {
        p = ngx_http_conductor_mock_word_end(p, ctx->text.data
                                                + ctx->text.len);
        ctx->completion++;
    }

    m = ngx_http_conductor_mock_member(members, obj.n, "encoding_format",
                                       NGX_HTTP_CONDUCTOR_JSON_STRING);

    if (m) {
        n = ngx_http_conductor_json_string_decode(m->value, m->value_len,
                                                  format, sizeof(format));
        ctx->base64 = (n == 6 && ngx_strncmp(format, "base64", 6) == 0);
    }

    m = ngx_http_conductor_mock_member(members, obj.n, "stream_options",
                                       NGX_HTTP_CONDUCTOR_JSON_OBJECT);

    if (m) {
        rc = ngx_http_conductor_json_scan_object(m->value, m->value_len,
                                                 &opts, options, 8);

        if (rc == NGX_HTTP_CONDUCTOR_JSON_OK
            || rc == NGX_HTTP_CONDUCTOR_JSON_TOO_MANY)
        {
            ctx->usage = ngx_http_conductor_mock_member(options, opts.n,
                                              "include_usage",
                                              NGX_HTTP_CONDUCTOR_JSON_TRUE)
                         != NULL;
        }
    }

    stream = ngx_http_conductor_mock_member(members, obj.n, "stream",
                                            NGX_HTTP_CONDUCTOR_JSON_TRUE);

    if (stream == NULL || shape->events == NULL) {
        return ngx_http_conductor_mock_json(r, ctx, NGX_HTTP_OK, shape->json);
    }

    return ngx_http_conductor_mock_stream(r, ctx, shape->events);
}


/* the request body in one piece, read back from a temp file if need be */

static ngx_int_t
ngx_http_conductor_mock_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    for ( /* void */ ; cl; cl = cl->next) {
        b = cl->buf;
        body->len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                                : (size_t) (b->last - b->pos);
    }

    if (body->len == 0) {
        return NGX_OK;
    }

    body->data = ngx_pnalloc(r->pool, body->len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = body->data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        size = (size_t) (b->file_last - b->file_pos);

        n = ngx_read_file(b->file, p, size, b->file_pos);

        if (n == NGX_ERROR || (size_t) n != size) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "conductor mock: short read of the request body "
                          "from \"%V\"", &b->file->name);
            return NGX_ERROR;
        }

        p += n;
    }

    return NGX_OK;
}


static ngx_http_conductor_json_member_t *
ngx_http_conductor_mock_member(ngx_http_conductor_json_member_t *members,
    size_t n, const char *name, int type)
{
    long  i;

    i = ngx_http_conductor_json_find(members, n, name);

    if (i < 0 || members[i].type != type) {
        return NULL;
    }

    return &members[i];
}


/* a word of the reply is sent together with the spaces after it */

static u_char *
ngx_http_conductor_mock_word_end(u_char *p, u_char *end)
{
    while (p < end && *p != ' ') {
        p++;
    }

    while (p < end && *p == ' ') {
        p++;
    }

    return p;
}


static ngx_int_t
ngx_http_conductor_mock_error(ngx_http_request_t *r, ngx_uint_t ep,
    ngx_uint_t n)
{
    ngx_int_t                       rc;
    ngx_http_conductor_mock_ctx_t  *ctx;

    /* a no-op once the body was read */
    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_conductor_mock_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->error = &ngx_http_conductor_mock_errors[n];
    ctx->dialect = (ep == NGX_HTTP_CONDUCTOR_EP_MESSAGES)
                   ? NGX_HTTP_CONDUCTOR_ANTHROPIC : NGX_HTTP_CONDUCTOR_OPENAI;

    if (ctx->error->status == NGX_HTTP_NOT_ALLOWED
        && ngx_http_conductor_mock_add_header(r, "Allow",
                   ep == NGX_HTTP_CONDUCTOR_MOCK_MODELS ? "GET, HEAD" : "POST")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_conductor_mock_json(r, ctx, ctx->error->status,
                               ngx_http_conductor_mock_error_tpl[ctx->dialect]);
}


static ngx_int_t
ngx_http_conductor_mock_json(ngx_http_request_t *r,
    ngx_http_conductor_mock_ctx_t *ctx, ngx_int_t status, const char *tpl)
{
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    cl = ngx_http_conductor_mock_buf(r, ctx, tpl);
    if (cl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cl->buf->flush = 0;
    cl->buf->last_buf = (r == r->main);
    cl->buf->last_in_chain = 1;

    r->headers_out.content_length_n = cl->buf->last - cl->buf->pos;

    rc = ngx_http_conductor_mock_header(r, status, "application/json");

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, cl);
}


/*
 * All the events are rendered at once, each into its own flushed buffer.
 * Without a delay they leave together; with one, the request timer sends
 * them one at a time, and holds a reference on the request until the last.
 */

static ngx_int_t
ngx_http_conductor_mock_stream(ngx_http_request_t *r,
    ngx_http_conductor_mock_ctx_t *ctx, ngx_http_conductor_mock_event_t *ev)
{
    u_char               *p, *end;
    ngx_int_t             rc;
    ngx_chain_t          *cl, **ll;
    ngx_pool_cleanup_t   *cln;

    ll = &ctx->out;
    cl = NULL;
    end = ctx->text.data + ctx->text.len;

    for ( /* void */ ; ev->tpl; ev++) {

        if ((ev->flags & NGX_HTTP_CONDUCTOR_MOCK_USAGE) && !ctx->usage) {
            continue;
        }

        p = ctx->text.data;

        do {
            if (ev->flags & NGX_HTTP_CONDUCTOR_MOCK_WORDS) {
                ctx->word.data = p;
                p = ngx_http_conductor_mock_word_end(p, end);
                ctx->word.len = p - ctx->word.data;
            }

            cl = ngx_http_conductor_mock_buf(r, ctx, ev->tpl);
            if (cl == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            *ll = cl;
            ll = &cl->next;
            ctx->seq++;

        } while ((ev->flags & NGX_HTTP_CONDUCTOR_MOCK_WORDS) && p < end);
    }

    if (cl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cl->buf->last_buf = (r == r->main);
    cl->buf->last_in_chain = 1;

    if (ngx_http_conductor_mock_add_header(r, "Cache-Control", "no-cache")
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_conductor_mock_header(r, NGX_HTTP_OK, "text/event-stream");

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    ctx->delay = ((ngx_http_conductor_loc_conf_t *)
                  ngx_http_get_module_loc_conf(r, ngx_http_conductor_module))
                 ->mock_delay;

    if (ctx->delay == 0) {
        return ngx_http_output_filter(r, ctx->out);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_conductor_mock_cleanup;
    cln->data = ctx;

    rc = ngx_http_conductor_mock_send_next(r, ctx);

    if (rc == NGX_ERROR || ctx->out == NULL) {
        return rc;
    }

    ctx->timer.handler = ngx_http_conductor_mock_tick;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;

    ngx_add_timer(&ctx->timer, ctx->delay);

    /* the timer's reference; a client that goes away ends the request */
    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static void
ngx_http_conductor_mock_tick(ngx_event_t *ev)
{
    ngx_int_t                       rc;
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_http_conductor_mock_ctx_t  *ctx;

    ctx = ev->data;
    r = ctx->request;
    c = r->connection;

    rc = ngx_http_conductor_mock_send_next(r, ctx);

    if (rc == NGX_ERROR || ctx->out == NULL) {
        ngx_http_finalize_request(r, rc);

    } else {
        ngx_add_timer(ev, ctx->delay);
    }

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_conductor_mock_send_next(ngx_http_request_t *r,
    ngx_http_conductor_mock_ctx_t *ctx)
{
    ngx_chain_t  *cl;

    cl = ctx->out;
    ctx->out = cl->next;
    cl->next = NULL;

    return ngx_http_output_filter(r, cl);
}


/* runs when the request is freed, also when the client went away */

static void
ngx_http_conductor_mock_cleanup(void *data)
{
    ngx_http_conductor_mock_ctx_t  *ctx = data;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }
}


static ngx_chain_t *
ngx_http_conductor_mock_buf(ngx_http_request_t *r,
    ngx_http_conductor_mock_ctx_t *ctx, const char *tpl)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NULL;
    }

    b = ngx_create_temp_buf(r->pool,
                            ngx_http_conductor_mock_render(NULL, tpl, ctx));
    if (b == NULL) {
        return NULL;
    }

    b->last += ngx_http_conductor_mock_render(b->pos, tpl, ctx);
    b->flush = 1;

    cl->buf = b;
    cl->next = NULL;

    return cl;
}


/* writes tpl filled in to dst, or only measures it when dst is NULL */

static size_t
ngx_http_conductor_mock_render(u_char *dst, const char *tpl,
    ngx_http_conductor_mock_ctx_t *ctx)
{
    size_t       n, len;
    u_char       num[NGX_INT64_LEN];
    ngx_str_t   *str;
    const char  *sub;

    for (n = 0; *tpl; tpl++) {

        if (*tpl != '$') {
            if (dst) {
                dst[n] = *tpl;
            }

            n++;
            continue;
        }

        str = NULL;
        sub = NULL;
        len = 0;

        switch (*++tpl) {

        case 'm':
            str = &ctx->model;
            break;

        case 't':
            str = &ctx->text;
            break;

        case 'w':
            str = &ctx->word;
            break;

        case 'T':
            len = ngx_sprintf(num, "%T", ctx->created) - num;
            break;

        case 'p':
            len = ngx_sprintf(num, "%ui", ctx->prompt) - num;
            break;

        case 'c':
            len = ngx_sprintf(num, "%ui", ctx->completion) - num;
            break;

        case 's':
            len = ngx_sprintf(num, "%ui", ctx->prompt + ctx->completion) - num;
            break;

        case 'n':
            len = ngx_sprintf(num, "%ui", ctx->seq) - num;
            break;

        case 'u':
            sub = ctx->usage ? ",\"usage\":null" : "";
            break;

        case 'e':
            /* the float32 little-endian bytes of 0.1, 0.2, 0.3 */
            sub = ctx->base64 ? "\"zczMPc3MTD6amZk+\"" : "[0.1,0.2,0.3]";
            break;

        case 'E':
            sub = ngx_http_conductor_error_kind(ctx->error->status)
                      ->type[ctx->dialect];
            break;

        case 'M':
            sub = ctx->error->message;
            break;

        case 'U':
            sub = ngx_http_conductor_mock_usage;
            break;

        case 'P':
            sub = ngx_http_conductor_mock_part;
            break;

        case 'I':
            sub = ngx_http_conductor_mock_item;
            break;

        case 'R':
            sub = ngx_http_conductor_mock_response;
            break;

        default:
            break;
        }

        if (sub) {
            n += ngx_http_conductor_mock_render(dst ? dst + n : NULL, sub, ctx);
            continue;
        }

        if (str) {
            len = ngx_http_conductor_json_escape_len(str->data, str->len);

            if (dst) {
                ngx_http_conductor_json_escape(dst + n, str->data, str->len);
            }

        } else if (dst) {
            ngx_memcpy(dst + n, num, len);
        }

        n += len;
    }

    return n;
}


static ngx_int_t
ngx_http_conductor_mock_header(ngx_http_request_t *r, ngx_int_t status,
    const char *type)
{
    if (ngx_http_conductor_mock_add_header(r, "X-Conductor-Mock", "1")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.status = status;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    return ngx_http_send_header(r);
}


static ngx_int_t
ngx_http_conductor_mock_add_header(ngx_http_request_t *r, const char *key,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}
