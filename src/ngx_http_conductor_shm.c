
/*
 * The shared zone: one rbtree node of counters per key and per model alias,
 * found by name (never by secret), so that a reload keeps every counter.
 */


#include "ngx_http_conductor.h"


static ngx_http_conductor_node_t *ngx_http_conductor_node_get(
    ngx_http_conductor_main_conf_t *cmcf, ngx_str_t *name);
static void ngx_http_conductor_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);


ngx_int_t
ngx_http_conductor_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_conductor_main_conf_t  *ocmcf = data;

    u_char                           *last;
    size_t                            len;
    ngx_str_t                         name;
    ngx_uint_t                        i, j, d;
    ngx_http_conductor_key_t         *key;
    ngx_http_conductor_model_t      **m;
    ngx_http_conductor_client_t     **cl;
    ngx_http_conductor_provider_t   **p;
    ngx_http_conductor_main_conf_t   *cmcf;
    u_char                            buf[512];

    cmcf = shm_zone->data;

    if (ocmcf) {
        /* a reload: the old tree and every counter in it carry on */
        cmcf->sh = ocmcf->sh;
        cmcf->shpool = ocmcf->shpool;

    } else {
        cmcf->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

        if (shm_zone->shm.exists) {
            cmcf->sh = cmcf->shpool->data;

        } else {
            cmcf->sh = ngx_slab_calloc(cmcf->shpool,
                                       sizeof(ngx_http_conductor_shctx_t));
            if (cmcf->sh == NULL) {
                return NGX_ERROR;
            }

            cmcf->shpool->data = cmcf->sh;

            ngx_rbtree_init(&cmcf->sh->rbtree, &cmcf->sh->sentinel,
                            ngx_http_conductor_rbtree_insert_value);

            len = sizeof(" in conductor zone \"\"") + shm_zone->shm.name.len;

            cmcf->shpool->log_ctx = ngx_slab_alloc(cmcf->shpool, len);
            if (cmcf->shpool->log_ctx == NULL) {
                return NGX_ERROR;
            }

            ngx_sprintf(cmcf->shpool->log_ctx, " in conductor zone \"%V\"%Z",
                        &shm_zone->shm.name);

            cmcf->shpool->log_nomem = 0;
        }
    }

    p = cmcf->providers.elts;

    for (i = 0; i < cmcf->providers.nelts; i++) {
        last = ngx_snprintf(buf, sizeof(buf), "provider:%V", &p[i]->name);
        name.data = buf;
        name.len = last - buf;

        p[i]->node = ngx_http_conductor_node_get(cmcf, &name);
        if (p[i]->node == NULL) {
            goto nomem;
        }

        key = p[i]->keys.elts;

        for (j = 0; j < p[i]->keys.nelts; j++) {
            last = ngx_snprintf(buf, sizeof(buf), "key:%V/%V", &p[i]->name,
                                &key[j].name);
            name.data = buf;
            name.len = last - buf;

            key[j].node = ngx_http_conductor_node_get(cmcf, &name);
            if (key[j].node == NULL) {
                goto nomem;
            }

            /* a new configuration may carry a new secret for the key */
            key[j].node->disabled = 0;
        }
    }

    m = cmcf->models.elts;

    for (i = 0; i < cmcf->models.nelts; i++) {
        last = ngx_snprintf(buf, sizeof(buf), "model:%V", &m[i]->name);
        name.data = buf;
        name.len = last - buf;

        m[i]->node = ngx_http_conductor_node_get(cmcf, &name);
        if (m[i]->node == NULL) {
            goto nomem;
        }
    }

    cl = cmcf->clients.elts;

    for (i = 0; i < cmcf->clients.nelts; i++) {
        last = ngx_snprintf(buf, sizeof(buf), "client:%V", &cl[i]->name);
        name.data = buf;
        name.len = last - buf;

        cl[i]->node = ngx_http_conductor_node_get(cmcf, &name);
        if (cl[i]->node == NULL) {
            goto nomem;
        }
    }

    for (d = 0; d < NGX_HTTP_CONDUCTOR_NDIALECTS; d++) {
        last = ngx_snprintf(buf, sizeof(buf), "model:%V",
                            &cmcf->passthrough[d].name);
        name.data = buf;
        name.len = last - buf;

        cmcf->passthrough[d].node = ngx_http_conductor_node_get(cmcf, &name);
        if (cmcf->passthrough[d].node == NULL) {
            goto nomem;
        }
    }

    if (ngx_http_conductor_sync_init_zone(cmcf) != NGX_OK) {
        goto nomem;
    }

    /* the last requests and minutes: the last configuration's carry on */
    ngx_http_conductor_history_init_zone(cmcf, shm_zone->shm.log);

    if (ocmcf == NULL && !shm_zone->shm.exists) {
        /* a new zone: the counters of the last run, where a file has them */
        ngx_http_conductor_state_load(cmcf, shm_zone->shm.log);
    }

    return NGX_OK;

nomem:

    /* refusing the configuration keeps the running one and its limits */
    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                  "conductor zone \"%V\" (%uz bytes) is too small for %ui "
                  "keys, %ui models and %ui clients: raise the size of "
                  "conductor_zone in %s:%ui", &shm_zone->shm.name,
                  shm_zone->shm.size, cmcf->nkeys, cmcf->models.nelts,
                  cmcf->clients.nelts,
                  cmcf->zone_file ? cmcf->zone_file
                                  : (u_char *) "(the default zone)",
                  cmcf->zone_line);

    return NGX_ERROR;
}


static ngx_http_conductor_node_t *
ngx_http_conductor_node_get(ngx_http_conductor_main_conf_t *cmcf,
    ngx_str_t *name)
{
    ngx_http_conductor_node_t  *cn;

    cn = ngx_http_conductor_node_find(cmcf, name);
    if (cn) {
        return cn;
    }

    cn = ngx_slab_calloc(cmcf->shpool,
                         offsetof(ngx_http_conductor_node_t, name)
                         + name->len);
    if (cn == NULL) {
        return NULL;
    }

    cn->node.key = ngx_crc32_short(name->data, name->len);
    cn->remaining_requests = -1;
    cn->remaining_tokens = -1;
    cn->len = name->len;
    ngx_memcpy(cn->name, name->data, name->len);

    ngx_rbtree_insert(&cmcf->sh->rbtree, &cn->node);

    return cn;
}


/* the node of that name, NULL when the zone has none */

ngx_http_conductor_node_t *
ngx_http_conductor_node_find(ngx_http_conductor_main_conf_t *cmcf,
    ngx_str_t *name)
{
    uint32_t                    hash;
    ngx_int_t                   rc;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_conductor_node_t  *cn;

    hash = ngx_crc32_short(name->data, name->len);

    node = cmcf->sh->rbtree.root;
    sentinel = cmcf->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        cn = (ngx_http_conductor_node_t *) node;

        rc = ngx_memn2cmp(name->data, cn->name, name->len, cn->len);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_conductor_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_conductor_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            cn = (ngx_http_conductor_node_t *) node;
            cnt = (ngx_http_conductor_node_t *) temp;

            p = (ngx_memn2cmp(cn->name, cnt->name, cn->len, cnt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


void
ngx_http_conductor_shm_lock(ngx_http_conductor_main_conf_t *cmcf)
{
    ngx_shmtx_lock(&cmcf->shpool->mutex);
}


void
ngx_http_conductor_shm_unlock(ngx_http_conductor_main_conf_t *cmcf)
{
    ngx_shmtx_unlock(&cmcf->shpool->mutex);
}


time_t  ngx_http_conductor_periods[NGX_HTTP_CONDUCTOR_NLIMITS] = {
    60, 60, 3600, 3600, 86400, 86400
};
