from mesos_master.daemon import main

main()
