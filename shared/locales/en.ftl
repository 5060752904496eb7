# SMS: word for word what the service has always sent (clients' tests compare it).
sms = Your { $app } verification code is { $code }. It expires in { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Your { $app } verification code is { $code }.
