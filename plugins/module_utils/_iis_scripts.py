# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PowerShell the IIS modules run, as constants.

Each script starts with a header line naming it and its version, takes one
argument (the base64 UTF-8 JSON input document) and prints one base64 UTF-8
JSON result between the markers of ``_winrm``. No value is ever formatted
into these strings. Target: Windows PowerShell 5.1 with WebAdministration.

``SITE_SWAP`` runs primitive steps planned by ``_iis`` (query, then apply an
ordered list of actions). The query also reports the configuration of the
app's sites as trees read from ``applicationHost.config`` (see
``_iis_config``); configuration actions write trees through IIS's
configuration system (IISAdministration), one commit per action.
``PACKAGE`` downloads, verifies and unpacks a release.
``tests/doubles/iis_sim.py`` implements the same contract.
"""

from __future__ import annotations

SITE_SWAP_HEADER = '# immune.canary:iis_site_swap/2'
PACKAGE_HEADER = '# immune.canary:iis_package/1'

_COMMON = r"""param([string]$InputB64)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

function Write-Result {
    param($Result)
    $json = ConvertTo-Json -InputObject $Result -Depth 64 -Compress
    $b64 = [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($json))
    Write-Output -InputObject ('<<immune.canary:result>>' + $b64 + '<</immune.canary:result>>')
}

$doc = ConvertFrom-Json -InputObject ([System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($InputB64)))
"""

SITE_SWAP = SITE_SWAP_HEADER + '\n' + _COMMON + r"""
Import-Module -Name WebAdministration
Import-Module -Name IISAdministration

$ItemTags = @('add', 'remove', 'clear', 'application', 'virtualDirectory', 'binding', 'rule', 'error', 'mimeMap', 'provider',
    'scheduledTask', 'environmentVariable')
$KeyAttributes = @('name', 'path', 'value', 'key', 'fileExtension', 'statusCode', 'ipAddress', 'verb', 'url', 'users', 'roles', 'id')
# A fresh random key per run: fingerprints of encrypted values compare within
# one result and reveal nothing (HMACSHA256(): "a randomly generated key",
# https://learn.microsoft.com/dotnet/api/system.security.cryptography.hmacsha256.-ctor).
$Hmac = New-Object -TypeName System.Security.Cryptography.HMACSHA256

function Split-BindingInformation {
    param([string]$Information)
    $last = $Information.LastIndexOf(':')
    $middle = $Information.LastIndexOf(':', $last - 1)
    return @{
        ip = $Information.Substring(0, $middle)
        port = [int]$Information.Substring($middle + 1, $last - $middle - 1)
        host_header = $Information.Substring($last + 1)
    }
}

function Get-PoolState {
    param([string]$Name)
    if (-not $Name) { return '' }
    if (-not (Test-Path -LiteralPath ('IIS:\AppPools\' + $Name))) { return 'Missing' }
    return [string](Get-WebAppPoolState -Name $Name).Value
}

function Get-SiteState {
    param([string]$Name)
    return [string](Get-WebsiteState -Name $Name).Value
}

function Get-Inventory {
    $sites = @()
    foreach ($site in @(Get-ChildItem -LiteralPath 'IIS:\Sites')) {
        $bindings = @()
        foreach ($binding in @($site.bindings.Collection)) {
            $parts = Split-BindingInformation -Information ([string]$binding.bindingInformation)
            $hash = [string]$binding.certificateHash
            $bindings += [ordered]@{
                protocol = [string]$binding.protocol
                ip = $parts.ip
                port = $parts.port
                host_header = $parts.host_header
                certificate_thumbprint = $hash.ToUpperInvariant()
                certificate_store = [string]$binding.certificateStoreName
                sni = (([int]$binding.sslFlags -band 1) -eq 1)
            }
        }
        $pool = [string]$site.applicationPool
        $appPools = @($pool)
        foreach ($application in @(Get-WebApplication -Site $site.name)) {
            $appPools += [string]$application.applicationPool
        }
        $sites += [ordered]@{
            name = [string]$site.name
            id = [int]$site.id
            state = Get-SiteState -Name $site.name
            app_pool = $pool
            app_pools = @($appPools | Where-Object -FilterScript { $_ } | Select-Object -Unique)
            app_pool_state = Get-PoolState -Name $pool
            physical_path = [string]$site.physicalPath
            preload_enabled = [bool]$site.applicationDefaults.preloadEnabled
            auto_start = [bool]$site.serverAutoStart
            bindings = $bindings
        }
    }
    $pools = @()
    foreach ($pool in @(Get-ChildItem -LiteralPath 'IIS:\AppPools')) {
        $pools += [ordered]@{
            name = [string]$pool.name
            state = [string]$pool.state
            managed_runtime = [string]$pool.managedRuntimeVersion
            pipeline_mode = [string]$pool.managedPipelineMode
            identity = [string]$pool.processModel.identityType
            start_mode = [string]$pool.startMode
            idle_timeout = [int]([TimeSpan]$pool.processModel.idleTimeout).TotalMinutes
        }
    }
    return [ordered]@{ sites = $sites; pools = $pools }
}

# -- the configuration of sites, app pools and <location> tags ----------------

function ConvertTo-Hashtable {
    param($Object)
    $table = @{}
    if ($Object -is [System.Collections.IDictionary]) {
        foreach ($name in @($Object.Keys)) { $table[[string]$name] = [string]$Object[$name] }
    }
    elseif ($null -ne $Object) {
        foreach ($property in @($Object.PSObject.Properties)) { $table[$property.Name] = [string]$property.Value }
    }
    return $table
}

function Get-Fingerprint {
    param([string]$Value)
    $bytes = $Hmac.ComputeHash([System.Text.Encoding]::UTF8.GetBytes($Value))
    return ([System.BitConverter]::ToString($bytes) -replace '-', '').Substring(0, 32).ToLowerInvariant()
}

function Get-ChildElements {
    param($Node)
    return @($Node.ChildNodes | Where-Object -FilterScript { $_ -is [System.Xml.XmlElement] })
}

# The attributes that tell an element apart among its siblings (the same rule as _iis_config.item_key).
function Get-ItemKey {
    param($Node, $Siblings)
    $key = [ordered]@{}
    if ($Node.LocalName -eq 'binding') {
        foreach ($name in @('protocol', 'bindingInformation')) { if ($Node.HasAttribute($name)) { $key[$name] = $Node.GetAttribute($name) } }
        return $key
    }
    $same = @($Siblings | Where-Object -FilterScript { $_.LocalName -eq $Node.LocalName }).Count
    if (($ItemTags -notcontains $Node.LocalName) -and $same -le 1) { return $key }
    foreach ($name in $KeyAttributes) {
        if ($Node.HasAttribute($name)) {
            $key[$name] = $Node.GetAttribute($name)
            return $key
        }
    }
    foreach ($attribute in @($Node.Attributes)) { $key[$attribute.Name] = [string]$attribute.Value }
    return $key
}

# The live configuration element a locator names: an app pool, a site or a
# <location> section, then child elements and collection items by their key.
function Find-ConfigElement {
    param($Locator)
    switch ([string]$Locator.kind) {
        'pool' { $element = Get-NamedElement -SectionPath 'system.applicationHost/applicationPools' -Name ([string]$Locator.name) }
        'site' { $element = Get-NamedElement -SectionPath 'system.applicationHost/sites' -Name ([string]$Locator.name) }
        'section' {
            $element = Get-IISConfigSection -SectionPath ([string]$Locator.section) -Location ([string]$Locator.location)
        }
        default { throw ('unknown locator kind ' + [string]$Locator.kind) }
    }
    # foreach takes the steps one level deep: each step is the array (tag, key).
    foreach ($step in $Locator.steps) {
        if ($null -eq $step) { continue }
        if ($null -eq $element) { break }
        $key = ConvertTo-Hashtable -Object $step[1]
        if ($key.Count -eq 0) {
            $element = Get-IISConfigElement -ConfigElement $element -ChildElementName ([string]$step[0])
        }
        else {
            $element = Get-IISConfigCollectionElement -ConfigCollection (Get-IISConfigCollection -ConfigElement $element) -ConfigAttribute $key
        }
    }
    if ($null -eq $element) { throw 'an element holding an encrypted attribute is not in the configuration' }
    return $element
}

# One element of applicationHost.config as a tree. An encrypted attribute
# ([enc:...:enc] in the file) is read through IIS's configuration system
# and reported only as a fingerprint.
function ConvertTo-Tree {
    param($Node, $Locator)
    $attrs = [ordered]@{}
    $secret = [ordered]@{}
    foreach ($attribute in @($Node.Attributes)) {
        $value = [string]$attribute.Value
        if ($value.StartsWith('[enc:') -or $attribute.Name -eq 'password') {
            $live = Find-ConfigElement -Locator $Locator
            $secret[$attribute.Name] = Get-Fingerprint -Value ([string](Get-IISConfigAttributeValue -ConfigElement $live -AttributeName $attribute.Name))
        }
        else {
            $attrs[$attribute.Name] = $value
        }
    }
    $children = @()
    $elements = Get-ChildElements -Node $Node
    foreach ($child in $elements) {
        $step = ,@([string]$child.LocalName, (Get-ItemKey -Node $child -Siblings $elements))
        $inner = [ordered]@{ kind = $Locator.kind; name = $Locator.name; location = $Locator.location; section = $Locator.section }
        $inner.steps = @($Locator.steps) + $step
        $children += ConvertTo-Tree -Node $child -Locator $inner
    }
    $tree = [ordered]@{ tag = [string]$Node.LocalName; attrs = $attrs; children = $children }
    if ($secret.Count -gt 0) { $tree.secret = $secret }
    return $tree
}

# The file as IIS stores it. Reading it (rather than the configuration API,
# which merges inherited values into each element and hides the <clear/> and
# <remove/> entries of collections) keeps exactly what is set where.
function Read-ApplicationHostConfig {
    $file = Get-WebConfigFile -PSPath 'MACHINE/WEBROOT/APPHOST'
    $path = [string]$file.FullName
    if (-not $path) { $path = Join-Path -Path $env:windir -ChildPath 'System32\inetsrv\config\applicationHost.config' }
    $xml = New-Object -TypeName System.Xml.XmlDocument
    $xml.LoadXml((Get-Content -LiteralPath $path -Raw -Encoding UTF8))
    return $xml
}

function Test-SiteLocation {
    param([string]$Path, [string]$Site)
    $low = $Path.ToLowerInvariant()
    $base = $Site.ToLowerInvariant()
    return ($low -eq $base) -or $low.StartsWith($base + '/')
}

function Read-Sections {
    param($Location, [string]$Path, $Known, $Unreadable)
    $found = [ordered]@{}
    $what = ' of <location path="' + $Path + '">'
    $pending = New-Object -TypeName System.Collections.Queue
    foreach ($child in (Get-ChildElements -Node $Location)) { $pending.Enqueue(@('', $child)) }
    while ($pending.Count -gt 0) {
        $entry = $pending.Dequeue()
        $node = $entry[1]
        $sectionPath = [string]$node.LocalName
        if ($entry[0]) { $sectionPath = [string]$entry[0] + '/' + $sectionPath }
        if ($Known.ContainsKey($sectionPath)) {
            try {
                $locator = [ordered]@{ kind = 'section'; name = ''; location = $Path; section = $sectionPath; steps = @() }
                $found[$sectionPath] = ConvertTo-Tree -Node $node -Locator $locator
            }
            catch {
                $Unreadable.Add([ordered]@{ where = $Path; what = ('section ' + $sectionPath + $what); reason = [string]$_.Exception.Message }) | Out-Null
            }
        }
        elseif (@($Known.Keys | Where-Object -FilterScript { $_.StartsWith($sectionPath + '/') }).Count -gt 0) {
            foreach ($child in (Get-ChildElements -Node $node)) { $pending.Enqueue(@($sectionPath, $child)) }
        }
        else {
            $reason = 'the IIS schema of this host has no section ' + $sectionPath
            $Unreadable.Add([ordered]@{ where = $Path; what = ('section ' + $sectionPath + $what); reason = $reason }) | Out-Null
        }
    }
    return $found
}

function Get-Configuration {
    param([string[]]$Names, $Checks)
    $xml = Read-ApplicationHostConfig
    $known = @{}
    foreach ($section in @(Get-IISConfigSection)) { $known[[string]$section.SectionPath] = $true }
    $unreadable = New-Object -TypeName System.Collections.ArrayList
    $config = [ordered]@{ sites = [ordered]@{}; pools = [ordered]@{}; locations = [ordered]@{}; unreadable = @(); checks = @() }
    $siteNodes = Get-ChildElements -Node $xml.DocumentElement.SelectSingleNode('system.applicationHost/sites')
    $poolNodes = Get-ChildElements -Node $xml.DocumentElement.SelectSingleNode('system.applicationHost/applicationPools')
    foreach ($name in $Names) {
        $node = @($siteNodes | Where-Object -FilterScript { $_.LocalName -eq 'site' -and $_.GetAttribute('name') -eq $name })
        if ($node.Count -eq 0) { continue }
        $config.sites[$name] = ConvertTo-Tree -Node $node[0] -Locator ([ordered]@{ kind = 'site'; name = $name; location = ''; section = ''; steps = @() })
        $pools = @([string](Get-Item -LiteralPath ('IIS:\Sites\' + $name)).applicationPool)
        foreach ($application in @(Get-WebApplication -Site $name)) { $pools += [string]$application.applicationPool }
        foreach ($pool in @($pools | Where-Object -FilterScript { $_ } | Select-Object -Unique)) {
            $poolNode = @($poolNodes | Where-Object -FilterScript { $_.LocalName -eq 'add' -and $_.GetAttribute('name') -eq $pool })
            if ($poolNode.Count -gt 0) {
                $locator = [ordered]@{ kind = 'pool'; name = $pool; location = ''; section = ''; steps = @() }
                $config.pools[$pool] = ConvertTo-Tree -Node $poolNode[0] -Locator $locator
            }
        }
        foreach ($location in @(Get-ChildElements -Node $xml.DocumentElement | Where-Object -FilterScript { $_.LocalName -eq 'location' })) {
            $path = $location.GetAttribute('path')
            if (-not (Test-SiteLocation -Path $path -Site $name)) { continue }
            if (-not $config.locations.Contains($path)) { $config.locations[$path] = [ordered]@{ attrs = [ordered]@{}; sections = [ordered]@{} } }
            foreach ($attribute in @($location.Attributes)) {
                if ($attribute.Name -ne 'path') { $config.locations[$path].attrs[$attribute.Name] = [string]$attribute.Value }
            }
            $sections = Read-Sections -Location $location -Path $path -Known $known -Unreadable $unreadable
            foreach ($sectionPath in @($sections.Keys)) { $config.locations[$path].sections[$sectionPath] = $sections[$sectionPath] }
        }
    }
    $config.unreadable = @($unreadable)
    $config.checks = @(foreach ($value in @($Checks | Where-Object -FilterScript { $null -ne $_ })) { Get-Fingerprint -Value ([string]$value) })
    return $config
}

# -- writing trees --------------------------------------------------------------

# Text as stored in the file, as the value the attribute's schema type needs
# (ConfigurationElementSchema.AttributeSchemas and ConfigurationAttributeSchema.Type,
# https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationattributeschema.type).
function ConvertTo-ConfigValue {
    param($Schema, [string]$Text)
    if ($null -eq $Schema) { return $Text }
    $culture = [System.Globalization.CultureInfo]::InvariantCulture
    switch ([string]$Schema.Type) {
        'bool' { return [bool]::Parse($Text) }
        'int' { return [int]::Parse($Text, $culture) }
        'uint' { return [uint32]::Parse($Text, $culture) }
        'int64' { return [long]::Parse($Text, $culture) }
        'timeSpan' { return [TimeSpan]::Parse($Text, $culture) }
        default {
            if (([string]$Schema.Type -eq 'enum' -or [string]$Schema.Type -eq 'flags') -and $Text -match '^[0-9]+$') { return [int]$Text }
            return $Text
        }
    }
}

# Every encrypted value a tree copies, read before anything is written (the
# element it comes from may be the one rewritten). The value stays in this
# process: IIS's configuration system decrypts it here and encrypts it again
# when it is written.
function Resolve-Secrets {
    param($Tree)
    $values = @{}
    if ($null -ne $Tree.copy_secret) {
        $source = Find-ConfigElement -Locator $Tree.copy_secret.from
        foreach ($name in @($Tree.copy_secret.attributes)) {
            $values[[string]$name] = Get-IISConfigAttributeValue -ConfigElement $source -AttributeName ([string]$name)
        }
    }
    Add-Member -InputObject $Tree -NotePropertyName resolved -NotePropertyValue $values -Force
    foreach ($child in @($Tree.children | Where-Object -FilterScript { $null -ne $_ })) { Resolve-Secrets -Tree $child }
}

# Collection items are told from child elements by the element's schema
# (ConfigurationElementSchema.CollectionSchema and ConfigurationCollectionSchema.AddElementNames,
# ClearElementName, RemoveElementName, GetAddElementSchema(),
# https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationcollectionschema).
function Write-Tree {
    param($Element, $Tree, [string[]]$Keep)
    foreach ($property in @($Tree.attrs.PSObject.Properties)) {
        if ($Keep -contains $property.Name) { continue }
        $value = ConvertTo-ConfigValue -Schema $Element.Schema.AttributeSchemas[$property.Name] -Text ([string]$property.Value)
        Set-IISConfigAttributeValue -ConfigElement $Element -AttributeName $property.Name -AttributeValue $value
    }
    foreach ($name in @($Tree.resolved.Keys)) {
        Set-IISConfigAttributeValue -ConfigElement $Element -AttributeName $name -AttributeValue $Tree.resolved[$name]
    }
    if ($null -ne $Tree.secret_values) {
        foreach ($property in @($Tree.secret_values.PSObject.Properties)) {
            Set-IISConfigAttributeValue -ConfigElement $Element -AttributeName $property.Name -AttributeValue ([string]$property.Value)
        }
    }
    foreach ($child in @($Tree.children | Where-Object -FilterScript { $null -ne $_ })) {
        $tag = [string]$child.tag
        $schema = $Element.Schema.CollectionSchema
        $adds = @()
        if ($null -ne $schema) { $adds = @(([string]$schema.AddElementNames).Split(',')) }
        if ($null -ne $schema -and $tag -eq [string]$schema.ClearElementName) {
            Clear-IISConfigCollection -ConfigCollection (Get-IISConfigCollection -ConfigElement $Element) -Confirm:$false
        }
        elseif ($null -ne $schema -and $tag -eq [string]$schema.RemoveElementName) {
            $key = ConvertTo-Hashtable -Object $child.attrs
            Remove-IISConfigCollectionElement -ConfigCollection (Get-IISConfigCollection -ConfigElement $Element) -ConfigAttribute $key -Confirm:$false
        }
        elseif ($adds -contains $tag) {
            $itemSchema = $schema.GetAddElementSchema($tag)
            $values = @{}
            foreach ($property in @($child.attrs.PSObject.Properties)) {
                $values[$property.Name] = ConvertTo-ConfigValue -Schema $itemSchema.AttributeSchemas[$property.Name] -Text ([string]$property.Value)
            }
            $item = New-IISConfigCollectionElement -ConfigCollection (Get-IISConfigCollection -ConfigElement $Element) -ConfigAttribute $values -Passthru
            Write-Tree -Element $item -Tree $child -Keep @($values.Keys)
        }
        else {
            $inner = Get-IISConfigElement -ConfigElement $Element -ChildElementName $tag
            Write-Tree -Element $inner -Tree $child -Keep @()
        }
    }
}

# Back to nothing set: every attribute stored on the element (ConfigurationElement.RawAttributes,
# https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationelement.rawattributes),
# its child elements and its collection.
function Reset-Element {
    param($Element, [string[]]$Keep)
    foreach ($name in @($Element.RawAttributes.Keys)) {
        if ($Keep -notcontains $name) { Remove-IISConfigAttribute -ConfigElement $Element -AttributeName $name }
    }
    foreach ($inner in @($Element.ChildElements)) { Reset-Element -Element $inner -Keep @() }
    if ($null -ne $Element.Schema.CollectionSchema) {
        Clear-IISConfigCollection -ConfigCollection (Get-IISConfigCollection -ConfigElement $Element) -Confirm:$false
    }
}

function Get-NamedElement {
    param([string]$SectionPath, [string]$Name)
    $collection = Get-IISConfigCollection -ConfigElement (Get-IISConfigSection -SectionPath $SectionPath)
    return Get-IISConfigCollectionElement -ConfigCollection $collection -ConfigAttribute @{ name = $Name }
}

function Register-Certificates {
    param($Action)
    foreach ($b in @($Action.certificates | Where-Object -FilterScript { $null -ne $_ })) {
        $binding = Get-WebBinding -Name $Action.name -Protocol https -IPAddress $b.ip -Port $b.port -HostHeader $b.host_header
        $binding.AddSslCertificate([string]$b.certificate_thumbprint, [string]$b.certificate_store)
    }
}

# One configuration change, committed as one write of applicationHost.config.
function Invoke-ConfigAction {
    param($Action)
    $name = [string]$Action.name
    # A fresh view of the configuration: the actions before this one may have changed it.
    Reset-IISServerManager -Confirm:$false
    if ($null -ne $Action.tree) { Resolve-Secrets -Tree $Action.tree }
    Start-IISCommitDelay
    try {
        switch ([string]$Action.op) {
            'create_pool' {
                $pools = Get-IISConfigCollection -ConfigElement (Get-IISConfigSection -SectionPath 'system.applicationHost/applicationPools')
                $element = New-IISConfigCollectionElement -ConfigCollection $pools -ConfigAttribute @{ name = $name } -Passthru
                Write-Tree -Element $element -Tree $Action.tree -Keep @('name')
            }
            'set_pool' {
                $element = Get-NamedElement -SectionPath 'system.applicationHost/applicationPools' -Name $name
                Reset-Element -Element $element -Keep @('name')
                Write-Tree -Element $element -Tree $Action.tree -Keep @('name')
            }
            'create_site' {
                $sites = Get-IISConfigCollection -ConfigElement (Get-IISConfigSection -SectionPath 'system.applicationHost/sites')
                $key = @{ name = $name; id = [long]$Action.tree.attrs.id }
                $element = New-IISConfigCollectionElement -ConfigCollection $sites -ConfigAttribute $key -Passthru
                Write-Tree -Element $element -Tree $Action.tree -Keep @('name', 'id')
            }
            'set_site' {
                # The site keeps its name, its id and what start and stop own.
                $element = Get-NamedElement -SectionPath 'system.applicationHost/sites' -Name $name
                Reset-Element -Element $element -Keep @('name', 'id', 'serverAutoStart')
                Write-Tree -Element $element -Tree $Action.tree -Keep @('name', 'id', 'serverAutoStart')
            }
            'set_section' {
                $section = Get-IISConfigSection -SectionPath ([string]$Action.section) -Location $name
                # ConfigurationSection.RevertToParent() and .OverrideMode:
                # https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configurationsection
                $section.RevertToParent()
                if ([string]$Action.override_mode) { $section.OverrideMode = [string]$Action.override_mode }
                Write-Tree -Element $section -Tree $Action.tree -Keep @()
            }
            'remove_section' {
                (Get-IISConfigSection -SectionPath ([string]$Action.section) -Location $name).RevertToParent()
            }
            'remove_location' {
                # Configuration.RemoveLocationPath(), an exact path:
                # https://learn.microsoft.com/dotnet/api/microsoft.web.administration.configuration.removelocationpath
                # (Remove-WebConfigurationLocation takes the name as a wildcard pattern.)
                (Get-IISServerManager).GetApplicationHostConfiguration().RemoveLocationPath($name)
            }
        }
        Stop-IISCommitDelay -Commit $true
    }
    catch {
        Stop-IISCommitDelay -Commit $false
        throw
    }
    if ([string]$Action.op -eq 'create_site' -or [string]$Action.op -eq 'set_site') { Register-Certificates -Action $Action }
}

function Wait-State {
    param([string]$Kind, [string]$Name, [string]$Want, [datetime]$Deadline)
    $delay = 100
    while ($true) {
        if ($Kind -eq 'site') { $now = Get-SiteState -Name $Name } else { $now = Get-PoolState -Name $Name }
        if ($now -eq $Want) { return }
        if ((Get-Date) -gt $Deadline) {
            throw ('timed out waiting for ' + $Kind + ' ' + $Name + ' to be ' + $Want + '; last state: ' + $now)
        }
        Start-Sleep -Milliseconds $delay
        $delay = [Math]::Min($delay * 2, 2000)
    }
}

function Find-BindingHolder {
    param([string]$Name)
    $inventory = Get-Inventory
    $mine = @($inventory.sites | Where-Object -FilterScript { $_.name -eq $Name })
    foreach ($other in @($inventory.sites | Where-Object -FilterScript { $_.name -ne $Name -and $_.state -eq 'Started' })) {
        foreach ($a in @($mine[0].bindings)) {
            foreach ($b in @($other.bindings)) {
                $sameIp = ($a.ip -eq $b.ip) -or ($a.ip -eq '*') -or ($b.ip -eq '*')
                if ($sameIp -and $a.port -eq $b.port -and $a.host_header -eq $b.host_header) { return $other.name }
            }
        }
    }
    return ''
}

function Invoke-Action {
    param($Action, [datetime]$Deadline)
    $name = [string]$Action.name
    switch ([string]$Action.op) {
        'stop_site' {
            Set-ItemProperty -LiteralPath ('IIS:\Sites\' + $name) -Name serverAutoStart -Value $false
            if ((Get-SiteState -Name $name) -ne 'Stopped') { Stop-Website -Name $name }
            Wait-State -Kind site -Name $name -Want Stopped -Deadline $Deadline
        }
        'stop_pool' {
            if ((Get-PoolState -Name $name) -ne 'Stopped') { Stop-WebAppPool -Name $name }
            Wait-State -Kind pool -Name $name -Want Stopped -Deadline $Deadline
        }
        'start_pool' {
            if ((Get-PoolState -Name $name) -ne 'Started') { Start-WebAppPool -Name $name }
            Wait-State -Kind pool -Name $name -Want Started -Deadline $Deadline
        }
        'start_site' {
            Set-ItemProperty -LiteralPath ('IIS:\Sites\' + $name) -Name serverAutoStart -Value $true
            try {
                Start-Website -Name $name
            }
            catch {
                if ($_.Exception.HResult -eq -2147024713 -or [string]$_.Exception.Message -match '800700B7') {
                    $holder = Find-BindingHolder -Name $name
                    throw [System.InvalidOperationException]::new('BINDING_CONFLICT:' + $holder)
                }
                throw
            }
            Wait-State -Kind site -Name $name -Want Started -Deadline $Deadline
        }
        'remove_site' { Remove-Website -Name $name }
        'remove_pool' { Remove-WebAppPool -Name $name }
        'remove_content' {
            if (Test-Path -LiteralPath ([string]$Action.path)) { Remove-Item -LiteralPath ([string]$Action.path) -Recurse -Force }
        }
        default { Invoke-ConfigAction -Action $Action }
    }
}

$result = [ordered]@{ failed = $false; msg = ''; applied = @(); conflict_site = ''; inventory = $null }
$knownOps = @('create_pool', 'set_pool', 'create_site', 'set_site', 'set_section', 'remove_section', 'remove_location', 'stop_site',
    'stop_pool', 'start_pool', 'start_site', 'remove_site', 'remove_pool', 'remove_content')
try {
    if ($doc.operation -eq 'apply') {
        $deadline = (Get-Date).AddSeconds([double]$doc.wait_timeout)
        foreach ($action in @($doc.actions)) {
            if ($knownOps -notcontains [string]$action.op) { throw ('unknown action ' + [string]$action.op) }
            Invoke-Action -Action $action -Deadline $deadline
            $result.applied += [string]$action.op + ' ' + [string]$action.name
        }
    }
}
catch {
    $result.failed = $true
    $text = [string]$_.Exception.Message
    if ($text.StartsWith('BINDING_CONFLICT:')) {
        $result.conflict_site = $text.Substring(17)
        $text = 'a binding is held by another site (0x800700B7)'
    }
    $result.msg = $text
}
try {
    $result.inventory = Get-Inventory
    if ($doc.operation -eq 'query') {
        $app = [string]$doc.app
        $names = @()
        foreach ($site in @($result.inventory.sites)) {
            if ($app -and ($site.name -eq $app -or $site.name.StartsWith($app + '-'))) { $names += $site.name }
        }
        foreach ($extra in @($doc.sites | Where-Object -FilterScript { $null -ne $_ })) {
            if ($names -notcontains [string]$extra) { $names += [string]$extra }
        }
        $result.config = Get-Configuration -Names $names -Checks @($doc.checks)
    }
}
catch {
    $result.failed = $true
    $result.msg = ($result.msg + ' ' + [string]$_.Exception.Message).Trim()
}
Write-Result -Result $result
"""

PACKAGE = PACKAGE_HEADER + '\n' + _COMMON + r"""
$dest = [string]$doc.dest
$marker = Join-Path -Path $dest -ChildPath '.immune-canary-package.json'
$result = [ordered]@{ failed = $false; msg = ''; changed = $false; dest = $dest; checksum = ''; size = $null }

function Read-Marker {
    if (-not (Test-Path -LiteralPath $marker)) { return $null }
    try { return ConvertFrom-Json -InputObject (Get-Content -LiteralPath $marker -Raw -Encoding UTF8) } catch { return $null }
}

try {
    $current = Read-Marker
    if ($doc.state -eq 'absent') {
        if (Test-Path -LiteralPath $dest) {
            $result.changed = $true
            if (-not $doc.check_mode) { Remove-Item -LiteralPath $dest -Recurse -Force }
        }
    }
    elseif ($current -ne $null -and [string]$current.checksum -eq [string]$doc.checksum) {
        $result.checksum = [string]$current.checksum
        $result.size = [long]$current.size
    }
    elseif ($doc.check_mode) {
        $result.changed = $true
        $result.checksum = [string]$doc.checksum
    }
    else {
        $parent = Split-Path -Path $dest -Parent
        $leaf = Split-Path -Path $dest -Leaf
        if (-not (Test-Path -LiteralPath $parent)) { New-Item -Path $parent -ItemType Directory -Force | Out-Null }
        $token = [System.Guid]::NewGuid().ToString('N')
        $download = Join-Path -Path $parent -ChildPath ('.' + $leaf + '.' + $token + '.zip')
        $stage = Join-Path -Path $parent -ChildPath ('.' + $leaf + '.' + $token + '.new')
        $retired = Join-Path -Path $parent -ChildPath ('.' + $leaf + '.' + $token + '.old')
        try {
            [System.Net.ServicePointManager]::SecurityProtocol = [System.Net.SecurityProtocolType]::Tls12
            if (-not $doc.validate_certs) {
                [System.Net.ServicePointManager]::ServerCertificateValidationCallback = { $true }
            }
            $headers = @{}
            foreach ($property in @($doc.headers.PSObject.Properties)) { $headers[$property.Name] = [string]$property.Value }
            Invoke-WebRequest -Uri ([string]$doc.url) -OutFile $download -Headers $headers -TimeoutSec ([int]$doc.timeout) -UseBasicParsing
            $actual = 'sha256:' + (Get-FileHash -LiteralPath $download -Algorithm SHA256).Hash.ToLowerInvariant()
            if ($actual -ne [string]$doc.checksum) {
                throw ('checksum mismatch: expected ' + [string]$doc.checksum + ', downloaded file has ' + $actual)
            }
            $size = (Get-Item -LiteralPath $download).Length
            Expand-Archive -LiteralPath $download -DestinationPath $stage
            $record = ConvertTo-Json -InputObject ([ordered]@{ checksum = $actual; size = $size; url_host = ([System.Uri][string]$doc.url).Host }) -Compress
            [System.IO.File]::WriteAllText((Join-Path -Path $stage -ChildPath '.immune-canary-package.json'), $record)
            if (Test-Path -LiteralPath $dest) { Move-Item -LiteralPath $dest -Destination $retired }
            Move-Item -LiteralPath $stage -Destination $dest
            if (Test-Path -LiteralPath $retired) { Remove-Item -LiteralPath $retired -Recurse -Force }
            $result.changed = $true
            $result.checksum = $actual
            $result.size = $size
        }
        finally {
            foreach ($leftover in @($download, $stage)) {
                if (Test-Path -LiteralPath $leftover) { Remove-Item -LiteralPath $leftover -Recurse -Force }
            }
        }
    }
}
catch {
    $result.failed = $true
    $result.msg = [string]$_.Exception.Message
}
Write-Result -Result $result
"""

SCRIPTS = {
    'iis_site_swap': SITE_SWAP,
    'iis_package': PACKAGE,
}
