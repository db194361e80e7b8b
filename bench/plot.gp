# Latency vs throughput, ValidateVariant, open loop (bench/bench.py writes the data file:
# block 0 = catalogd, block 1 = no-op server; columns achieved_rps p50 p99 p99.9 in us).
# gnuplot -e 'datafile="..."; outfile="..."; title_="..."' bench/plot.gp
if (!exists("datafile")) datafile = "sweep.dat"
if (!exists("outfile")) outfile = "latency.png"
if (!exists("title_")) title_ = "ValidateVariant, open loop"
set terminal pngcairo size 900,560 font ",10"
set output outfile
set title title_
set xlabel "achieved throughput (requests/s)"
set ylabel "latency from intended send time (us)"
set logscale y
set grid
set key top left
set arrow from graph 0, first 1000 to graph 1, first 1000 nohead dt 2 lc rgb "#888888"
set label "1 ms" at graph 0.01, first 1150 tc rgb "#666666"
plot datafile index 0 using 1:2 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "catalogd p50", \
     datafile index 0 using 1:3 with linespoints lw 2 pt 5 lc rgb "#d62728" title "catalogd p99", \
     datafile index 0 using 1:4 with linespoints lw 1 pt 9 lc rgb "#ff7f0e" title "catalogd p99.9", \
     datafile index 1 using 1:2 with linespoints lw 1 pt 6 dt 2 lc rgb "#1f77b4" title "no-op p50", \
     datafile index 1 using 1:3 with linespoints lw 1 pt 4 dt 2 lc rgb "#d62728" title "no-op p99", \
     datafile index 1 using 1:4 with linespoints lw 1 pt 8 dt 2 lc rgb "#ff7f0e" title "no-op p99.9"
