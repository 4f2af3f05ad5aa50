-- Provider mode's store (docs/relay-contract.md, "Service-provider mode"). Nothing here is a
-- secret in clear: tokens are AES-256-GCM ciphertexts with their key id beside them; links and
-- states are kept as sha256 hashes of what the browser carries.

CREATE TABLE provider_merchants (
    merchant_ref          text PRIMARY KEY
                          CHECK (merchant_ref ~ '^[A-Za-z0-9._-]{1,64}$'),
    -- One uid belongs to one merchant_ref, whichever process writes (PingPong's rule).
    uid                   text UNIQUE CHECK (uid ~ '^[0-9]{1,20}$'),
    status                text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'authorized', 'needs_reauthorization', 'revoked')),
    access_token_key      text,
    access_token_sealed   bytea,
    refresh_token_key     text,
    refresh_token_sealed  bytea,
    access_expires_at     timestamptz,
    refresh_expires_at    timestamptz,
    last_refresh_at       timestamptz,
    last_error            text,
    -- Moves on every new access token: a caller whose token was refused names the generation
    -- it used, so many refusals of one token cause one refresh.
    generation            bigint NOT NULL DEFAULT 0,
    -- When the refresher next looks at this merchant (75 % of the access token's life, less
    -- a spread; later after a failure).
    next_refresh_at       timestamptz,
    refresh_failures      integer NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK ((access_token_key IS NULL) = (access_token_sealed IS NULL)),
    CHECK ((refresh_token_key IS NULL) = (refresh_token_sealed IS NULL)),
    -- An authorized merchant has both tokens; no other status keeps any.
    CHECK ((status = 'authorized') = (access_token_sealed IS NOT NULL AND refresh_token_sealed IS NOT NULL)),
    CHECK (status = 'authorized' OR (access_token_sealed IS NULL AND refresh_token_sealed IS NULL))
);

-- The refresher's sweep: authorized merchants by due time.
CREATE INDEX provider_merchants_due ON provider_merchants (next_refresh_at)
    WHERE status = 'authorized';

CREATE TABLE provider_links (
    -- sha256 of the opaque id in the link's URL.
    link_hash     bytea PRIMARY KEY CHECK (length(link_hash) = 32),
    merchant_ref  text NOT NULL REFERENCES provider_merchants (merchant_ref) ON DELETE CASCADE,
    return_url    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    -- Set when its button is pressed: a used link no longer leads to Weibo.
    used_at       timestamptz
);

CREATE INDEX provider_links_merchant ON provider_links (merchant_ref);

CREATE TABLE provider_states (
    -- sha256 of the 256-bit state the browser carries to Weibo and back.
    state_hash   bytea PRIMARY KEY CHECK (length(state_hash) = 32),
    link_hash    bytea NOT NULL UNIQUE REFERENCES provider_links (link_hash) ON DELETE CASCADE,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);

CREATE TABLE provider_outbox (
    id            bigserial PRIMARY KEY,
    merchant_ref  text NOT NULL,
    routing_key   text NOT NULL CHECK (routing_key LIKE 'merchant.%'),
    body          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- A publisher holds rows it took until then; after it, another may take them.
    claimed_until timestamptz,
    published_at  timestamptz
);

CREATE INDEX provider_outbox_unpublished ON provider_outbox (id) WHERE published_at IS NULL;
