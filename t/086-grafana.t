# conf/grafana/conductor.json, the Grafana dashboard: every metric its
# queries name (panels and template variables) is in the module's real
# Prometheus output, from an nginx with providers, keys, clients with limits
# and a budget, and Redis, after traffic of every kind (answers, a stream,
# an estimated and an unpriced answer, 5xx, a provider's 429, a refused key,
# a client at its limit); every label a query groups by, matches or shows
# in a legend is on each metric of that query; label values matched
# literally exist. The checker is shown to catch a planted wrong metric name
# and a wrong label.
#
# With Debian's prometheus package (CI installs it): promtool parses every
# query, and a real Prometheus on loopback scrapes that nginx and answers
# every query with at least one series.

use strict;
use warnings;

use File::Path ();
use FindBin ();
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use lib "$FindBin::Bin/lib";

use Test::Conductor;
use Test::Redis;
use Test::More;

my $env  = harness_env();
my $root = $env->{TEST_NGINX_ROOT};
my $file = "$root/conf/grafana/conductor.json";
my $work = "$env->{TEST_NGINX_SERVROOT}-grafana";
File::Path::remove_tree($work);
File::Path::make_path($work);

plan skip_all => 'no redis-server' unless redis_available();

# ---------------------------------------------------------------- the dashboard

my $dash = JSON::PP->new->decode(do { local (@ARGV, $/) = $file; <> });

my @panels;
sub walk { for (@_) { push @panels, $_; walk(@{ $_->{panels} || [] }) } }
walk(@{ $dash->{panels} });

my @vars = @{ $dash->{templating}{list} || [] };
my ($ds) = grep { $_->{type} eq 'datasource' } @vars;
ok $ds && $ds->{query} eq 'prometheus', 'a Prometheus datasource variable';
my $dsref = '${' . ($ds ? $ds->{name} : 'datasource') . '}';

my %ids;
my @queries;    # [where, expr, legend]
for my $p (@panels) {
    $ids{ $p->{id} }++;
    next if $p->{type} eq 'row';
    ok $p->{gridPos} && $p->{title}, "panel $p->{id} has a place and a title";
    is(($p->{datasource} || {})->{uid}, $dsref, "panel '$p->{title}' uses the datasource variable");
    ok @{ $p->{targets} || [] }, "panel '$p->{title}' has queries";
    for my $t (@{ $p->{targets} || [] }) {
        is(($t->{datasource} || {})->{uid}, $dsref, "panel '$p->{title}' $t->{refId}: the datasource variable");
        push @queries, ["panel '$p->{title}' $t->{refId}", $t->{expr}, $t->{legendFormat} // ''];
    }
}
is_deeply [ grep { $ids{$_} > 1 } sort keys %ids ], [], 'panel ids are unique';
my @overlap;
for my $i (0 .. $#panels) {
    for my $j ($i + 1 .. $#panels) {
        my ($a, $b) = map { $_->{gridPos} || {} } @panels[$i, $j];
        push @overlap, "$panels[$i]{id}/$panels[$j]{id}"
            if $a->{x} < $b->{x} + $b->{w} && $b->{x} < $a->{x} + $a->{w}
            && $a->{y} < $b->{y} + $b->{h} && $b->{y} < $a->{y} + $a->{h};
    }
}
is_deeply \@overlap, [], 'no two panels overlap on the grid (24 columns)';
ok !(grep { ($_->{gridPos}{x} // 0) + ($_->{gridPos}{w} // 99) > 24 } @panels), 'every panel fits in 24 columns';

for my $v (grep { $_->{type} eq 'query' } @vars) {
    my $q = ref $v->{query} ? $v->{query}{query} : $v->{query};
    my ($expr, $label) = $q =~ /^\s*label_values\((.*),\s*(\w+)\s*\)\s*$/s
        or fail("variable $v->{name}: label_values(selector, label)"), next;
    is(($v->{datasource} || {})->{uid}, $dsref, "variable $v->{name} uses the datasource variable");
    push @queries, ["variable $v->{name}", $expr, "{{$label}}"];
}
cmp_ok scalar @queries, '>=', 30, scalar(@queries) . ' queries in the dashboard';

# ---------------------------------------------------------------- PromQL, read

my %KEYWORD = map { $_ => 1 } qw(by without on ignoring group_left group_right offset bool and or unless);
my %TARGET  = map { $_ => 1 } qw(instance job);    # labels Prometheus adds at scrape time

# Grafana's variables as Prometheus would see them
sub grafana_expand {
    my ($e) = @_;
    $e =~ s/\$__rate_interval|\$__interval|\$__range\b/1m/g;
    $e =~ s/\$\{?\w+\}?/.*/g;
    return $e;
}

# (metric names, labels used, [label, op, value] literal matchers) of a query
sub promql_parts {
    my ($expr, $legend) = @_;
    my (%metric, %label, @match);
    my $e = $expr;
    while ($e =~ s/\{([^{}]*)\}/ /) {
        my $m = $1;
        while ($m =~ /(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g) {
            $label{$1} = 1;
            push @match, [$1, $2, $3];
        }
    }
    $e =~ s/"(?:[^"\\]|\\.)*"/ /g;
    while ($e =~ s/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)/ /) {
        $label{$_} = 1 for $1 =~ /(\w+)/g;
    }
    $e =~ s/\[[^\]]*\]/ /g;                     # range selectors, subqueries
    $e =~ s/\b[a-zA-Z_]\w*\s*\(/ (/g;           # functions, aggregations
    $e =~ s/(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?\b/ /gi;    # numbers
    for my $id ($e =~ /([a-zA-Z_:][\w:]*)/g) {
        $metric{$id} = 1 unless $KEYWORD{$id};
    }
    $label{$_} = 1 for ($legend // '') =~ /\{\{\s*(\w+)\s*\}\}/g;
    return ([sort keys %metric], [sort keys %label], \@match);
}

# what the module's text exposition has: {metric => {label => {value => 1}}}
sub exposition {
    my ($text) = @_;
    my %seen;
    for (split /\n/, $text) {
        next if /^#/ || !/\S/;
        my ($name, $labels) = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+\S+$/ or next;
        $seen{$name} //= {};
        while (($labels // '') =~ /(\w+)="((?:[^"\\]|\\.)*)"/g) { $seen{$name}{$1}{$2} = 1 }
    }
    return \%seen;
}

# the problems of one query against an exposition; empty: none
sub problems {
    my ($seen, $expr, $legend) = @_;
    my ($metrics, $labels, $match) = promql_parts($expr, $legend);
    my @p;
    push @p, 'names no metric' unless @$metrics;
    for my $m (@$metrics) {
        push(@p, "$m is not in the module's output"), next unless $seen->{$m};
        push @p, map {"$m has no label $_"} grep { !$TARGET{$_} && !exists $seen->{$m}{$_} } @$labels;
        for (grep { !$TARGET{ $_->[0] } && $_->[1] =~ /^=~?$/ && $_->[2] =~ /^[\w|]+$/ } @$match) {
            my ($l, $op, $v) = @$_;
            push @p, map {"$m has no $l=\"$_\""} grep { !$seen->{$m}{$l}{$_} } split /\|/, $v;
        }
    }
    return \@p;
}

# ---------------------------------------------------------------- an nginx with all of it

my $rport = free_port($env->{TEST_NGINX_DEAD_PORT});
my $redis = redis_start(dir => $work, port => $rport);
my $MOCK  = $env->{TEST_NGINX_MOCK_PORT};

start_nginx(
    http_config => <<"HTTP",
    conductor_zone conductor:1m;
    conductor_breaker failures=2 timeout=60s;
    conductor_provider openai {
        url http://127.0.0.1:$MOCK/v1;
        key k1 s1 rpm=100 tpm=100000;
        key k2 s2 rpm=100;
        price mock-fast input=0.10 output=0.40;
        price "mock-est;usage=omit" input=0.10 output=0.40;
    }
    conductor_provider anthropic {
        url http://127.0.0.1:$MOCK/v1;
        api anthropic;
        key a1 sa1 rpm=50;
        price mock-claude input=3 output=15 cached_input=0.30;
    }
    conductor_provider flaky { url http://127.0.0.1:$MOCK/v1; key f1 sf1; }
    conductor_provider busy  { url http://127.0.0.1:$MOCK/v1; key b1 sb1; }
    conductor_provider gone  { url http://127.0.0.1:$MOCK/v1; key g1 sg1; }
    conductor_model fast   { openai mock-fast; }
    conductor_model est    { openai "mock-est;usage=omit"; }
    conductor_model free   { openai mock-free; }
    conductor_model claude { anthropic mock-claude; }
    conductor_model flaky  { flaky "flaky;status=500"; }
    conductor_model busy   { busy "busy;status=429;retry_after=300"; }
    conductor_model gone   { gone "gone;status=401"; }
    conductor_client team {
        key sk-team;
        limit rpm=100 tpm=100000 max_inflight=8;
        budget 1.00 per=day;
        budget 20 per=month;
    }
    conductor_client tight { key sk-tight; limit rpm=1; }
    conductor_redis redis://127.0.0.1:$rport/0 sync=100ms timeout=200ms prefix=t086:;
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => route_location('/v1/') . route_location('/team/v1/', auth => 1)
        . '    location = /conductor/status { conductor_status; }',
);

my %PROM = (bin => '/usr/bin/prometheus', tool => '/usr/bin/promtool');
my ($prom_pid, $prom_port);
END { if ($prom_pid) { kill 'TERM', $prom_pid; waitpid $prom_pid, 0 } }
if (-x $PROM{bin}) {
    # scrapes before the traffic and after it: rate() has an increase to see
    $prom_port = free_port($rport);
    open my $fh, '>', "$work/prometheus.yml" or die $!;
    print $fh <<"YML";
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: conductor
    metrics_path: /conductor/status
    params:
      format: [prometheus]
    static_configs:
      - targets: ['127.0.0.1:$env->{TEST_NGINX_PORT}']
YML
    close $fh;
    $prom_pid = fork // die "fork: $!";
    if (!$prom_pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$work/prometheus.log" or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        setpgrp(0, 0);
        { no warnings "exec"; exec $PROM{bin}, "--config.file=$work/prometheus.yml", "--storage.tsdb.path=$work/tsdb",
            "--web.listen-address=127.0.0.1:$prom_port", '--log.level=warn'; }
        POSIX::_exit(127);
    }
    ok wait_for(sub { prom_query('up{job="conductor"} == 1') }, timeout => 30,
        what => 'Prometheus to scrape the nginx'), 'Prometheus scrapes the module';
}

sub prom_query {    # the result list of an instant query, undef on an error
    my ($q) = @_;
    (my $enc = $q) =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    my $r = http_request(GET => "/api/v1/query?query=$enc", {}, undef, port => $prom_port,
        await_log => 0, timeout => 10);
    return undef unless ($r->{status} // 0) == 200 && ref $r->{json} eq 'HASH' && $r->{json}{status} eq 'success';
    my $res = $r->{json}{data}{result};
    return ref $res eq 'ARRAY' && @$res ? $res : undef;
}

ok wait_for(sub { (status_report() // {})->{redis}{state} eq 'ready' }, timeout => 10,
    what => 'Redis ready'), 'the nginx is connected to Redis';

# ---------------------------------------------------------------- traffic

my %team = (Authorization => 'Bearer sk-team');
sub post {
    my ($path, $body, %h) = @_;
    return http_request(POST => $path, { 'Content-Type' => 'application/json', %h }, $body)->{status};
}
my $hi = '"messages":[{"role":"user","content":"hi"}]';
my @st;
push @st, post('/team/v1/chat/completions', qq{{"model":"fast",$hi}}, %team) for 1 .. 3;
push @st, post('/team/v1/chat/completions', qq{{"model":"fast","stream":true,$hi}}, %team);
push @st, post('/team/v1/messages', qq{{"model":"claude","max_tokens":32,$hi}},
    'x-api-key' => 'sk-team', 'anthropic-version' => '2023-06-01');
push @st, post('/v1/chat/completions', qq{{"model":"est",$hi}});
push @st, post('/v1/chat/completions', qq{{"model":"free",$hi}});
is_deeply \@st, [ (200) x 7 ], 'answers: through a client key, a stream, Anthropic, estimated, unpriced';
cmp_ok post('/v1/chat/completions', qq{{"model":"flaky",$hi}}), '>=', 500, "a provider's 5xx ($_)" for 1 .. 2;
cmp_ok post('/v1/chat/completions', qq{{"model":"busy",$hi}}), '>=', 429, "a provider's 429";
cmp_ok post('/v1/chat/completions', qq{{"model":"gone",$hi}}), '>=', 400, 'a key the provider refuses';
is post('/team/v1/chat/completions', qq{{"model":"fast",$hi}}, Authorization => 'Bearer sk-tight'), 200,
    'the tight client once';
is post('/team/v1/chat/completions', qq{{"model":"fast",$hi}}, Authorization => 'Bearer sk-tight'), 429,
    'the tight client at its limit';

my $report = status_wait(sub { $_->{totals}{requests} >= 10 && defined $_->{redis}{last_sync_age_ms} },
    what => 'the traffic counted, a sync');
my $text = http_request(GET => '/conductor/status?format=prometheus', {}, undef)->{body} // '';
open my $pf, '>', "$work/exposition.txt" or die $!;
print $pf $text;
close $pf;
my $seen = exposition($text);
cmp_ok scalar(keys %$seen), '>=', 40, scalar(keys %$seen) . ' metrics in the module\'s output';
ok $seen->{conductor_redis_up} && $seen->{conductor_client_budget_usd} && $seen->{conductor_key_cooldown_seconds},
    'Redis, budgets and cooldowns among them';

# ---------------------------------------------------------------- the check

my %used;
for my $q (@queries) {
    my ($where, $expr, $legend) = @$q;
    my ($metrics) = promql_parts($expr, $legend);
    $used{$_} = 1 for @$metrics;
    my $p = problems($seen, $expr, $legend);
    is_deeply $p, [], "$where: its metrics and labels are in the module's output" or diag $expr;
}
note 'metrics the dashboard does not query: ' . join ' ', grep { !$used{$_} } sort keys %$seen;
ok exists $seen->{$_}, "$_ is in the module's output" for sort keys %used;

# the checker catches what it is for
my $good = 'sum by (provider, key) (rate(conductor_key_requests_total{instance=~"$instance"}[$__rate_interval]))';
is_deeply problems($seen, $good, '{{provider}}/{{key}}'), [], 'the checker: a right query passes';
is_deeply problems($seen, $good =~ s/requests_total/requests_totl/r, ''),
    ["conductor_key_requests_totl is not in the module's output"], 'the checker: a planted wrong metric name fails';
is_deeply problems($seen, $good =~ s/provider, key/provider, model/r, ''),
    ['conductor_key_requests_total has no label model'], 'the checker: a label the metric has not fails';
is_deeply problems($seen, 'sum(rate(conductor_client_errors_total{class="4299"}[1m]))', ''),
    ['conductor_client_errors_total has no class="4299"'], 'the checker: a label value never emitted fails';
is_deeply problems($seen, 'sum(rate(requests_total[1m]))', ''),
    ["requests_total is not in the module's output"], 'the checker: a name without the prefix fails';

# ---------------------------------------------------------------- promtool, Prometheus

SKIP: {
    skip 'no promtool (Debian: prometheus)', 2 unless -x $PROM{tool};
    my $json = JSON::PP->new->canonical;
    open my $rf, '>', "$work/rules.yml" or die $!;
    print $rf "groups:\n  - name: dashboard\n    rules:\n";
    print $rf "      - record: dashboard:query_$_\n        expr: " . $json->encode(grafana_expand($queries[$_][1])) . "\n"
        for 0 .. $#queries;
    close $rf;
    my ($st, $out) = run_logged([$PROM{tool}, 'check', 'rules', "$work/rules.yml"], "$work/promtool.log");
    is $st, 0, 'promtool check rules: every query parses' or diag $out;
    open $rf, '>', "$work/bad-rules.yml" or die $!;
    print $rf "groups:\n  - name: bad\n    rules:\n      - record: bad:query\n        expr: "
        . $json->encode('sum by (provider (rate(conductor_key_requests_total[1m]))') . "\n";
    close $rf;
    ($st) = run_logged([$PROM{tool}, 'check', 'rules', "$work/bad-rules.yml"], "$work/promtool-bad.log");
    isnt $st, 0, 'promtool check rules: a broken query does not';
}

SKIP: {
    skip 'no prometheus (Debian: prometheus)', 1 unless $prom_pid;
    # two scrapes after the traffic: every rate() has its increase
    my $scrapes = sub { my $r = prom_query('count_over_time(up{job="conductor"}[1h])'); $r ? $r->[0]{value}[1] : 0 };
    my $n = $scrapes->();
    wait_for(sub { $scrapes->() >= $n + 2 }, timeout => 20, what => 'two more scrapes');
    my @empty;
    for my $q (@queries) {
        my $expr = grafana_expand($q->[1]);
        my $res = prom_query($expr);
        push @empty, "$q->[0]: $expr" unless $res;
    }
    is_deeply \@empty, [], 'Prometheus answers every query of the dashboard with a series, from the module\'s output';

    # the one query that counts keys across three families: each key once
    my ($unavailable) = grep { $_->[0] =~ /'Keys unavailable'/ } @queries;
    my $res = $unavailable && prom_query(grafana_expand($unavailable->[1]));
    is $res && $res->[0]{value}[1], 3, 'Keys unavailable: 3 (a breaker open, a cooldown, a disabled key)';
}

# ---------------------------------------------------------------- end

if ($prom_pid) {
    kill 'TERM', $prom_pid;
    waitpid $prom_pid, 0;
    undef $prom_pid;
}
my $problems = stop_nginx();
is_deeply $problems, [], 'nginx stopped cleanly' or diag join "\n", @$problems;
redis_stop($redis);

done_testing();
