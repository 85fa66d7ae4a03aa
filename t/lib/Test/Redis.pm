package Test::Redis;

# Real redis-server processes for the fleet tests, on 127.0.0.1 only, with
# nothing persisted, stopped by pid (also when the test dies), and a second
# nginx node beside the harness's own (its own prefix, port and workers).

use strict;
use warnings;

use Exporter 'import';
use File::Path ();
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

our @EXPORT = qw(redis_available redis_start redis_stop redis_cli free_port
                 port_accepts node_start node_stop);

my $REDIS = '/usr/bin/redis-server';
my %redis;    # pid => port, every redis-server started here
my %nodes;    # pid => dir, every nginx node started here

sub redis_available { return -x $REDIS }

sub port_free {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
        Proto => 'tcp', Listen => 1, ReuseAddr => 1) or return 0;
    close $s;
    return 1;
}

sub port_accepts {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => 1) or return 0;
    close $s;
    return 1;
}

# a free port away from the harness's own (which start from the PID)
sub free_port {
    my ($base) = @_;
    my $port = ($base // 20000) + 300 + int(rand(2000));
    $port = 20000 + $port % 12000 until $port >= 20000 && $port < 32000 && port_free($port++);
    return $port - 1;
}

# redis_start(dir => D, port => P, args => [...]): returns the pid once the
# port accepts
sub redis_start {
    my (%o) = @_;
    File::Path::make_path("$o{dir}/data");
    my @argv = ($REDIS, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--dir', "$o{dir}/data", '--daemonize', 'no', '--logfile', '',
        @{ $o{args} || [] });
    push @argv, '--port', $o{port} unless grep { $_ eq '--tls-port' } @argv;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$o{dir}/redis-$o{port}.log" or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        setpgrp(0, 0);
        { no warnings 'exec'; exec { $argv[0] } @argv; }
        POSIX::_exit(127);
    }
    $redis{$pid} = $o{port};
    my $deadline = Time::HiRes::time() + 10;
    until (port_accepts($o{port})) {
        die "redis-server did not start on $o{port}\n" . `tail -5 $o{dir}/redis-$o{port}.log`
            if Time::HiRes::time() > $deadline || waitpid($pid, POSIX::WNOHANG()) == $pid;
        Time::HiRes::sleep(0.02);
    }
    return $pid;
}

sub redis_stop {
    my ($pid, $signal) = @_;
    return unless $pid && $redis{$pid};
    kill 'CONT', $pid;
    kill $signal // 'TERM', $pid;
    waitpid $pid, 0;
    delete $redis{$pid};
}

# redis-cli's answer to one command
sub redis_cli {
    my ($port, $auth, @cmd) = @_;
    my @argv = ('redis-cli', '-h', '127.0.0.1', '-p', $port, @{ $auth || [] }, @cmd);
    open my $fh, '-|', @argv or die "redis-cli: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

# node_start(dir => D, port => P, module => SO, main => ..., http => ...,
# server => ...): another nginx, daemonised, with its own prefix; returns
# the master's pid once the port accepts
sub node_start {
    my (%o) = @_;
    File::Path::remove_tree($o{dir});
    File::Path::make_path("$o{dir}/conf", "$o{dir}/logs");
    my $user = $> == 0 ? do { my $n = getpwuid($<); my $g = getgrgid((split ' ', $()[0]); "user $n $g;" } : '';
    my $temp = join "\n", map { "    ${_}_temp_path $o{dir}/${_}_temp;" } qw(client_body proxy fastcgi uwsgi scgi);
    open my $fh, '>', "$o{dir}/conf/nginx.conf" or die "$o{dir}/conf/nginx.conf: $!";
    print $fh <<"CONF";
load_module $o{module};
daemon on;
master_process on;
$user
error_log logs/error.log info;
pid logs/nginx.pid;
$o{main}
events { worker_connections 1024; }
http {
$temp
    access_log logs/access.log;
$o{http}
    server {
        listen 127.0.0.1:$o{port};
$o{server}
    }
}
CONF
    close $fh;
    system('nginx', '-p', "$o{dir}/", '-c', 'conf/nginx.conf') == 0
        or die "the second node did not start:\n" . `tail -5 $o{dir}/logs/error.log`;
    my $pid;
    my $deadline = Time::HiRes::time() + 10;
    until ($pid && port_accepts($o{port})) {
        die "the second node did not come up\n" if Time::HiRes::time() > $deadline;
        if (open my $p, '<', "$o{dir}/logs/nginx.pid") { ($pid) = <$p> =~ /(\d+)/ }
        Time::HiRes::sleep(0.05);
    }
    $nodes{$pid} = $o{dir};
    return $pid;
}

sub node_stop {
    my ($pid) = @_;
    return unless $pid && $nodes{$pid};
    kill 'QUIT', $pid;
    my $deadline = Time::HiRes::time() + 20;
    Time::HiRes::sleep(0.05) while kill(0, $pid) && Time::HiRes::time() < $deadline;
    kill 'KILL', $pid if kill 0, $pid;
    delete $nodes{$pid};
}

END {
    local $?;    # the waits below must not become the test's exit status
    node_stop($_) for keys %nodes;
    redis_stop($_, 'KILL') for keys %redis;
}

1;
