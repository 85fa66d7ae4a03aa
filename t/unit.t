# Runs the C unit tests (build/unit/*_test, built from t/unit/*_test.c by
# `make unit`) and turns every TAP line they print into a test of this file,
# named after the binary. A binary also fails here when it exits non-zero
# (ASan), prints no plan or a plan that does not match its tests, or bails out.
#
#   prove -v t/unit.t                 builds with `make -s unit` first
#   TEST_UNIT_NO_MAKE=1 prove t/unit.t   runs what build/unit already holds
use strict;
use warnings;
use Cwd ();
use File::Basename ();
use File::Temp ();
use POSIX ();
use Test::More;

my $ROOT = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
chdir $ROOT or die "chdir $ROOT: $!\n";
my $BUILD   = $ENV{BUILD} // "$ROOT/build";
my $TIMEOUT = $ENV{TEST_UNIT_TIMEOUT} // 300;

# UBSan only reports and carries on by default: make it fail the binary
$ENV{UBSAN_OPTIONS} //= 'print_stacktrace=1:halt_on_error=1';

my $make_failed;
unless ($ENV{TEST_UNIT_NO_MAKE}) {
    my $out = `make -s unit 2>&1`;
    $make_failed = $out if $?;
}

my @binaries = sort grep { -f && -x } glob "$BUILD/unit/*_test";
if (!@binaries && !defined $make_failed) {
    plan skip_all => "no unit test binaries in $BUILD/unit (t/unit/*_test.c, built by `make unit`)";
}
if (defined $make_failed) {
    fail('make -s unit');
    diag $make_failed;
}

run_binary($_) for @binaries;
done_testing();

# Runs one binary with a time limit; returns (exit status, stdout lines, stderr).
sub capture {
    my ($bin) = @_;
    my $err = File::Temp->new;
    my $pid = open(my $out, '-|') // die "fork: $!\n";
    if (!$pid) {
        open STDERR, '>', $err->filename or POSIX::_exit(126);
        { no warnings 'exec'; exec $bin; }
        print STDERR "exec $bin: $!\n";
        POSIX::_exit(127);
    }
    my $timed_out = 0;
    local $SIG{ALRM} = sub { $timed_out = 1; kill 'KILL', $pid };
    alarm $TIMEOUT;
    my @lines = <$out>;
    alarm 0;
    close $out;
    my $status = $?;
    my $stderr = do { local $/; open my $fh, '<', $err->filename; <$fh> } // '';
    $stderr .= "\n(killed after ${TIMEOUT}s)" if $timed_out;
    return ($status, \@lines, $stderr);
}

sub run_binary {
    my ($bin) = @_;
    my $name = File::Basename::basename($bin);
    my ($status, $lines, $stderr) = capture($bin);
    my ($plan, $count, $bailed) = (undef, 0, undef);
    my $tb = Test::More->builder;

    for my $line (@$lines) {
        chomp $line;
        if ($line =~ /^(not\s+)?ok\b\s*\d*\s*(?:-\s*)?(.*?)\s*$/) {
            my ($failed, $desc) = (defined $1, $2);
            $count++;
            my ($directive, $reason) = ('', '');
            ($directive, $reason) = (uc $1, $2) if $desc =~ s/\s*(?<!\\)#\s*(SKIP|TODO)\b\s*(.*)$//i;
            if ($directive eq 'SKIP') {
                $tb->skip("$name: $desc" . (length $reason ? " ($reason)" : ''));
            }
            elsif ($directive eq 'TODO') {
                $tb->todo_start($reason);
                ok(!$failed, "$name: $desc");
                $tb->todo_end;
            }
            else {
                ok(!$failed, "$name: $desc");
            }
        }
        elsif ($line =~ /^1\.\.(\d+)/) {
            $plan = $1;
        }
        elsif ($line =~ /^Bail out!/) {
            $bailed = $line;
        }
        elsif ($line =~ /^\s*#/) {
            note "$name: $line";
        }
    }

    my @why;
    push @why, sprintf('exit status %d%s', $status >> 8, ($status & 127) ? ', signal ' . ($status & 127) : '')
        if $status;
    push @why, 'printed no plan (1..N)' unless defined $plan;
    push @why, "planned $plan tests, ran $count" if defined $plan && $plan != $count;
    push @why, $bailed if $bailed;
    ok(!@why, "$name: exit 0, plan matches") or diag join "\n", @why, ($stderr =~ /\S/ ? ("--- stderr:", tail($stderr)) : ());
}

sub tail {
    my @l = split /\n/, shift;
    @l = @l[-60 .. -1] if @l > 60;
    return join "\n", @l;
}
