from mesos_agent.daemon import main

main()
